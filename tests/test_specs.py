from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from features.conftest import small_spec
from pipeline import spec_source
from pipeline.cli import main
from pipeline.commands import specs
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.errors import EXIT_BAD_INPUT, EXIT_OK
from tests import fleet_calls, test_plan, test_spec
from tests.test_cli import observed, run_cli

SCHEMA_FILE = PROJECT_ROOT / "schemas" / "cluster-spec.schema.json"
# The bad-spec table's cases that a JSON Schema can say: types, unknown fields, enums, bounds, forms.
# The others (an open SSH list, a reserved tag prefix, a name that differs from the command line's,
# a CIDR's prefix length) need the pipeline's own rules, which `spec check` applies.
STRUCTURAL = {
    "name-uppercase", "name-underscore", "name-leading-dash", "name-too-long", "name-one-character",
    "name-leading-digit", "name-path-escape", "name-not-string", "region-bad", "version-no-v", "cidr-not-cidr",
    "cidr-ipv6", "zones-zero", "zones-too-many", "zones-string", "zones-bool", "nat-unknown", "endpoint-unknown",
    "endpoint-twice", "endpoints-not-list", "network-not-mapping", "bastion-cidr-ipv6", "bastion-open-v6",
    "bastion-enabled-string", "bastion-instance-type", "cp-even", "cp-zero", "cp-instance-type", "worker-negative",
    "worker-bad-name", "worker-instance-type", "workers-not-list", "worker-replicas-beyond-int32", "tag-key-too-long",
    "tag-value-too-long", "tag-value-mapping", "unknown-top", "unknown-nested", "version-too-old", "version-too-new",
    "ssh-key-name-not-ascii", "pool-zone-not-a-zone", "pool-zone-twice", "pool-zones-empty", "autoscaling-no-max",
    "health-check-too-short", "addon-unknown", "addon-version-not-pinned", "addon-role-unknown",
}  # fmt: skip


def readme_specs() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    return [block for block in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "kubernetesVersion:" in block]


def example_specs() -> dict[str, str]:
    return {
        **{f"readme-{i}.yaml": text for i, text in enumerate(readme_specs())},
        "default.yaml": spec_source.default_spec_yaml("dev"),
        "test-spec-good.yaml": test_spec.GOOD,
        "test-plan.yaml": test_plan.SPEC.format(name="demo", replicas=3),
        "journey-small.yaml": small_spec("demo", 2),
    }


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA_FILE), "-o", "JSON"]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=120, check=False)


def test_the_committed_schema_is_the_model_and_spec_schema_prints_it(tmp_path: Path):
    assert SCHEMA_FILE.read_text() == specs.schema_text(), (
        "schemas/cluster-spec.schema.json is stale: python -m pipeline spec schema > schemas/cluster-spec.schema.json"
    )
    result = run_cli(tmp_path, "spec", "schema")
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text()
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    zones = schema["$defs"]["NetworkSpec"]["properties"]["zones"]
    assert zones["minimum"] == 1 and zones["maximum"] == 6 and zones["default"] == 2 and zones["description"]


def test_the_schema_accepts_every_example_spec(tmp_path: Path):
    assert readme_specs(), "the README's spec example was not found"
    files = []
    for name, text in example_specs().items():
        files.append(tmp_path / name)
        files[-1].write_text(text)
    result = check_jsonschema(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_refuses_the_structural_cases_of_the_bad_spec_table(tmp_path: Path):
    cases = {case_id: (path, value) for case_id, path, value, _ in test_spec.BAD}
    assert set(cases) >= STRUCTURAL
    files = {}
    for case_id in sorted(STRUCTURAL):
        files[case_id] = tmp_path / f"{case_id}.yaml"
        files[case_id].write_text(test_spec.with_change(*cases[case_id]))
    result = check_jsonschema(*files.values())
    refused = {Path(error["filename"]).stem for error in json.loads(result.stdout)["errors"]}
    assert refused == STRUCTURAL, sorted(STRUCTURAL - refused)


@pytest.mark.reliability("bad input", "spec check of a good file, then of a good and a bad one")
def test_spec_check_names_the_first_bad_file_and_writes_nothing(tmp_path: Path, record_property):
    good, bad = tmp_path / "web.yaml", tmp_path / "bad.yaml"
    good.write_text("region: eu-west-1\n")  # no name: the file's own, as in clusters/NAME.yaml
    bad.write_text(test_spec.GOOD.replace("replicas: 3\n  instanceType: m6i.large", "replicas: 4\n  instanceType: x"))

    ok = run_cli(tmp_path, "spec", "check", str(good), "--json")
    assert ok.returncode == EXIT_OK, ok.stderr
    assert json.loads(ok.stdout) == {"valid": [{"cluster": "web", "file": str(good)}]}

    failed = run_cli(tmp_path, "spec", "check", str(good), str(bad))
    record_property("outcome", observed(failed).replace(str(tmp_path), "<tmp>"))
    assert failed.returncode == EXIT_BAD_INPUT
    assert failed.stderr.splitlines() == [
        f"error: {bad}:14: spec field 'controlPlane.replicas': 4 control plane machines cannot keep etcd quorum; "
        "use an odd number: 1, 3 or 5"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "web.yaml"]


def test_spec_check_in_actions_annotates_the_bad_files_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: demo\nnetwork:\n  zones: 9\n")
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(tmp_path / "out")}
    result = run_cli(tmp_path, "spec", "check", str(bad), env=env)
    assert result.returncode == EXIT_BAD_INPUT
    assert f"::error file={bad},line=3::" in result.stderr


def test_spec_show_fills_in_every_default_and_the_cidr_the_fleet_would_give(
    settings: Settings, fleet_signer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert fleet_calls.claim_cidr(settings, "10.20.0.0/16", "other") == "other"
    monkeypatch.setenv("PIPELINE_FLEET", settings.fleet)
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(settings.state_dir))
    assert main(["spec", "show", "dev", "--json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["network"] == {
        "cidr": "10.21.0.0/16",
        "zones": 2,
        "natGateways": "single",
        "endpoints": ["kms", "logs", "s3", "sts"],
        "flowLogRetentionDays": 365,
    }
    assert shown["bastion"] == {
        "enabled": True,
        "allowOpenSSH": False,
        "allowedCIDRs": [],
        "instanceType": "t3.micro",
        "mode": "ssh",
    }
    assert shown["apiServer"] == {"allowOpenAccess": False, "allowedCIDRs": [], "internal": False}
    assert shown["kubernetesVersion"] == "v1.31.2"
    assert shown["workers"] == [
        {
            "name": "default",
            "replicas": 2,
            "instanceType": "m6i.large",
            "rootVolumeSize": 80,
            "zones": None,
            "autoscaling": None,
        }
    ]
    assert shown["healthChecks"] == {"enabled": True, "nodeStartupSeconds": 1200, "unhealthySeconds": 300}
