from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path

import boto3
import pytest

from pipeline import config, fleet, git, network, plan, render, spec, spec_source
from pipeline.commands import plan as plan_command
from pipeline.errors import EXIT_CHANGES, EXIT_OK
from pipeline.model import NetworkPlan, PlanSummary
from pipeline.report import Reporter
from pipeline.spec import ClusterSpec
from tests.fixtures_render import sample_outputs

SPEC = """\
name: {name}
region: us-east-1
kubernetesVersion: v1.31.2
network:
  cidr: 10.20.0.0/16
  zones: 1
  natGateways: single
  endpoints: []
bastion:
  enabled: false
controlPlane:
  replicas: {replicas}
  instanceType: m6i.large
workers:
  - name: default
    replicas: 1
    instanceType: m6i.large
sshKeyName: ""
"""


@pytest.fixture
def plan_settings(settings: config.Settings, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> config.Settings:
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("PIPELINE_STATE_BUCKET", f"tfstate-{uuid.uuid4().hex[:12]}")
    return config.load_settings(os.environ, settings.state_dir.parent)


def _spec_file(tmp_path: Path, name: str, replicas: int = 1) -> Path:
    path = tmp_path / f"{name}-{replicas}.yaml"
    path.write_text(SPEC.format(name=name, replicas=replicas))
    return path


def _run(name: str, spec_path: Path, settings: config.Settings, markdown: bool = False) -> int:
    return plan_command.run(name, spec_path, markdown, settings, Reporter(io.StringIO()))


@pytest.mark.slow
def test_a_new_cluster_plans_against_empty_state_and_creates_nothing(tmp_path, plan_settings, moto_endpoint, capsys):
    name = f"new-{uuid.uuid4().hex[:6]}"

    code = _run(name, _spec_file(tmp_path, name), plan_settings)

    assert code == EXIT_CHANGES
    out = capsys.readouterr().out
    assert "    + module.network.aws_vpc.this\n" in out
    assert "Manifests: rendered once the network exists" in out
    # The network rules judge the plan before anything exists; the manifest rules wait for the files.
    assert "Policy: every rule that applies holds" in out
    s3 = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert plan_settings.state_bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert not plan_settings.terraform_work_dir(name).exists()
    assert not Path(plan_settings.fleet).exists()
    assert not plan_settings.journal_dir.exists()

    # The same plan from another state dir (another machine: its own work dirs and plugin cache) hashes the same.
    shown = re.search(r"^Plan hash: (sha256:[0-9a-f]{64})$", out, re.MULTILINE)
    assert shown is not None, out
    elsewhere = config.load_settings({**os.environ, "PIPELINE_STATE_DIR": str(tmp_path / "other")}, tmp_path)
    assert _hash(name, _spec_file(tmp_path, name), elsewhere) == shown[1]


def _hash(name: str, spec_path: Path, settings: config.Settings) -> str:
    out = io.StringIO()
    plan_command.run(name, spec_path, False, settings, Reporter(io.StringIO(), out=out, as_json=True))
    return str(json.loads(out.getvalue())["plan_hash"])


def _planned_with_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The network as an existing cluster's plan finds it: built, nothing to change."""

    def unchanged(cluster: ClusterSpec, *_: object, **__: object) -> NetworkPlan:
        return NetworkPlan(PlanSummary(0, 0, 0), (), (), sample_outputs(cluster.vpc_cidr))

    monkeypatch.setattr(network, "plan", unchanged)


def _put_on_main(settings: config.Settings, signer, spec_path: Path, name: str) -> None:
    cluster = spec.parse(spec_source.read(spec_path.read_text(), str(spec_path)), name)
    manifests = render.render(
        cluster, sample_outputs(cluster.vpc_cidr), settings.templates_dir, fleet.LOCAL_MANAGEMENT_CIDRS
    )
    with git.clone(settings.fleet) as checkout:
        git.switch(checkout, fleet.MAIN, git.upstream(fleet.MAIN))
        git.write_files(checkout, {m.path: m.content for m in manifests.files})
        git.stage_all(checkout)
        git.commit(checkout, f"add {name}", signer)
        git.push(checkout, fleet.MAIN)


def test_an_existing_cluster_is_diffed_against_main(tmp_path, plan_settings, fleet_signer, monkeypatch, capsys):
    _planned_with_outputs(monkeypatch)
    _put_on_main(plan_settings, fleet_signer, _spec_file(tmp_path, "demo"), "demo")

    assert _run("demo", _spec_file(tmp_path, "demo"), plan_settings) == EXIT_OK
    out = capsys.readouterr().out
    assert "Manifests: identical to main\n\nPolicy: every rule that applies holds" in out
    assert out.endswith("\n\nNo changes.\n")

    assert _run("demo", _spec_file(tmp_path, "demo", replicas=3), plan_settings, markdown=True) == EXIT_CHANGES
    out = capsys.readouterr().out
    # A change of the spec that Terraform does not see still changes the plan's hash.
    unchanged, changed = (_hash("demo", _spec_file(tmp_path, "demo", n), plan_settings) for n in (1, 3))
    assert unchanged != changed
    assert f"<!-- fleet-pipeline-plan-hash demo {changed} -->\n" in out
    assert f"Plan hash: `{changed}`" in out
    assert "| `clusters/demo/controlplane.yaml` | changed |" in out
    assert "-  replicas: 1\n+  replicas: 3\n" in out
    assert "**Changes: new-cluster would apply and commit them.**" in out


def test_markdown_names_a_network_replacement_and_fits_a_comment():
    cluster = spec.parse(spec_source.read(SPEC.format(name="demo", replicas=1), "x"), "demo")
    vpc = "module.network.aws_vpc.this"
    network_plan = NetworkPlan(PlanSummary(1, 0, 1), ((vpc, "replace"),), (vpc,), sample_outputs())
    huge = "".join(f"+line {i}\n" for i in range(20_000))
    planned = plan.ClusterPlan(cluster, network_plan, (("clusters/demo/big.yaml", "changed"),), huge)

    text = plan.to_markdown(planned, limit=10_000)

    assert len(text) <= 10_000
    assert f"| `{vpc}` | replace |" in text
    assert f"> **Warning:** this replaces or destroys {vpc} under a running cluster" in text
    assert text.endswith("… diff truncated\n````\n</details>\n")
    assert f"  -/+ {vpc}\n  ! this replaces or destroys" in plan.to_text(planned)
