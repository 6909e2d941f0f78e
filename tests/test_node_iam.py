"""The account's node IAM: built once per account by real Terraform against the moto server, named by every machine."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
import yaml

from pipeline import config, iam_names, node_iam, render
from tests.fixtures import REPO_ROOT
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec

ACCOUNT = "123456789012"  # moto's


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str) -> config.Settings:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", endpoint)
    return config.load_settings(os.environ, tmp_path)


def _client(service: Literal["iam", "s3"], endpoint: str) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def _account_state(endpoint: str) -> dict[str, Any]:
    bucket = f"fleet-pipeline-tfstate-{ACCOUNT}-us-east-1"
    body = _client("s3", endpoint).get_object(Bucket=bucket, Key=node_iam.STATE_KEY)["Body"].read()
    state: dict[str, Any] = json.loads(body)
    return state


def test_the_account_stack_is_applied_once_and_makes_the_profiles_every_machine_template_names(
    tmp_path, monkeypatch, own_moto_endpoint
):
    settings = _settings(tmp_path, monkeypatch, own_moto_endpoint)

    built = node_iam.ensure(settings)

    assert built.applied
    iam = _client("iam", own_moto_endpoint)
    for profile, policies in (
        (built.control_plane_profile, {iam_names.CONTROL_PLANE_PROFILE, iam_names.NODES_PROFILE}),
        (built.nodes_profile, {iam_names.NODES_PROFILE}),
    ):
        roles = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
        assert [role["RoleName"] for role in roles] == [profile]
        trust = roles[0]["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        assert trust["Statement"][0]["Principal"] == {"Service": ["ec2.amazonaws.com"]}
        attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=profile)["AttachedPolicies"]}
        assert policies <= attached
    # The EBS CSI controller's volume rights are the control plane's only.
    nodes_attached = iam.list_attached_role_policies(RoleName=built.nodes_profile)["AttachedPolicies"]
    assert not any(p["PolicyName"].startswith("ebs-csi.") for p in nodes_attached)

    manifests = render.render(sample_spec(), sample_outputs(), settings.templates_dir, MANAGEMENT_CIDRS)
    templates = [
        doc
        for f in manifests.files
        if f.path.endswith("machinetemplates.yaml")
        for doc in yaml.safe_load_all(f.content)
    ]
    named = {t["metadata"]["name"]: t["spec"]["template"]["spec"]["iamInstanceProfile"] for t in templates}
    assert len(named) == 3
    assert {p for n, p in named.items() if "-control-plane-" in n} == {built.control_plane_profile}
    assert {p for n, p in named.items() if "-control-plane-" not in n} == {built.nodes_profile}

    # Another machine: no work dir of its own, so Terraform could not even run without init.
    serial = _account_state(own_moto_endpoint)["serial"]
    other = dataclasses.replace(settings, state_dir=tmp_path / "other-machine")

    again = node_iam.ensure(other)

    assert not again.applied
    assert (again.control_plane_profile, again.nodes_profile) == (built.control_plane_profile, built.nodes_profile)
    assert _account_state(own_moto_endpoint)["serial"] == serial
    assert not other.terraform_work_dir(node_iam.WORK_DIR).exists()


def test_a_state_built_from_another_version_of_the_stack_is_applied_again(tmp_path: Path) -> None:
    project = tmp_path / "terraform"
    shutil.copytree(REPO_ROOT / "terraform", project, ignore=shutil.ignore_patterns(".terraform"))
    inputs = {"region": "us-east-1", "control_plane_name": "cp", "nodes_name": "nodes"}
    digest = node_iam._digest(project, inputs)
    state = {
        "outputs": {
            "inputs_digest": {"value": digest},
            "control_plane_profile": {"value": "cp"},
            "nodes_profile": {"value": "nodes"},
        }
    }
    assert node_iam._built(state, digest) == node_iam.NodeIam("cp", "nodes", applied=False)

    module = project / "modules" / node_iam.MODULE / "main.tf"
    module.write_text(module.read_text().replace("For the kubelet and image pulls", "For the kubelets"))
    changed = node_iam._digest(project, inputs)

    assert changed != digest
    assert node_iam._built(state, changed) is None  # so ensure() runs Terraform
    assert node_iam._digest(project, {**inputs, "nodes_name": "workers"}) != changed
    assert node_iam._built(None, digest) is None and node_iam._built({"outputs": {}}, digest) is None
