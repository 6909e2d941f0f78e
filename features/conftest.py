"""The journeys' world and the steps they share: the real CLI, terraform, moto server, git and gpg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
import yaml
from mypy_boto3_ec2 import EC2Client
from mypy_boto3_s3 import S3Client
from pytest_bdd import given, parsers, then, when

from tests.fixtures import fleet_git, fleet_refs

# The moto server's account; the state bucket's name derives from it.
STATE_BUCKET = "fleet-pipeline-tfstate-123456789012-us-east-1"


def s3(world: World) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=world.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def ec2(world: World) -> EC2Client:
    client: EC2Client = _client(world, "ec2")
    return client


def iam(world: World) -> Any:
    return _client(world, "iam")


def _client(world: World, service: Literal["ec2", "iam"]) -> Any:
    return boto3.client(
        service,
        endpoint_url=world.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class World:
    workdir: Path
    env: dict[str, str]
    endpoint: str
    last: subprocess.CompletedProcess[str] | None = None
    refs_before: str = ""
    requests_before: int = 0  # GitHub requests seen before the step under test
    approved: str = ""  # the commit a reviewer approved
    head_before: str = ""  # a review branch's head before the step under test
    head_after: str = ""  # and after it
    vpc: str = ""  # the VPC of the cluster under test
    before: dict[str, object] = field(default_factory=dict)  # what a read-only command must leave as it was
    names: list[str] = field(default_factory=list)
    together: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    history: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # the error line of each run that was blocked
    clones: list[int] = field(default_factory=list)  # git clones each run made, in order
    plan_hashes: list[str] = field(default_factory=list)  # the hash each plan printed, in order

    @property
    def fleet(self) -> Path:
        return self.workdir / "fleet.git"

    def pipeline(self, *args: str) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory() as tmp:
            # git's own trace of every git process the run starts, read back for the clones among them
            trace = Path(tmp) / "trace2.json"
            result = subprocess.run(
                [sys.executable, "-m", "pipeline", *args],
                cwd=self.workdir,
                env={**self.env, "GIT_TRACE2_EVENT": str(trace)},
                capture_output=True,
                text=True,
                timeout=480,
                check=False,
            )
            events = [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []
        self.clones.append(sum(1 for e in events if e.get("event") == "cmd_name" and e.get("name") == "clone"))
        self.last = result
        self.history.append(result)
        return result

    def git(self, *args: str) -> str:
        return fleet_git(self.fleet, *args)

    def refs(self) -> str:
        return fleet_refs(self.fleet)


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str) -> World:
    env = dict(os.environ)
    env["PIPELINE_AWS_ENDPOINT"] = moto_endpoint
    env["PIPELINE_STATE_DIR"] = str(tmp_path / ".pipeline")
    return World(workdir=tmp_path, env=env, endpoint=moto_endpoint)


@given("an empty fleet")
def empty_fleet(world: World) -> None:
    assert not world.fleet.exists()


@when(parsers.parse('I run new-cluster "{name}"'))
def run_new_cluster(world: World, name: str) -> None:
    world.pipeline("new-cluster", name)


@when(parsers.parse('I approve "{name}"'))
def run_approve(world: World, name: str) -> None:
    world.pipeline("approve", name)


@then("the run succeeds")
def run_succeeds(world: World) -> None:
    assert world.last is not None
    assert world.last.returncode == 0, world.last.stderr


def verify_signed_by_trusted_key(world: World, ref: str) -> None:
    """Verify as Flux does: only the keys committed in the fleet's trusted-keys folder count."""
    keys = [
        world.git("show", f"main:{path}")
        for path in world.git("ls-tree", "--name-only", "main", "flux/system/keys/").split()
        if path.endswith(".asc")
    ]
    assert keys, "the fleet trusts no key"
    home = Path(tempfile.mkdtemp(prefix="gv", dir="/tmp"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        for key in keys:
            subprocess.run(
                ["gpg", "--batch", "--import"], input=key, text=True, env=env, check=True, capture_output=True
            )
        verified = subprocess.run(
            ["git", "--git-dir", str(world.fleet), "verify-commit", ref],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
        assert "Good signature" in verified.stderr
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        subprocess.run(["rm", "-rf", str(home)], check=False)


@then(parsers.parse('branch "{branch}" holds a commit signed by a trusted key'))
def branch_signed(world: World, branch: str) -> None:
    verify_signed_by_trusted_key(world, branch)


@then("main holds a commit signed by a trusted key")
def main_signed(world: World) -> None:
    verify_signed_by_trusted_key(world, "main")


@then(parsers.parse('the AWSCluster on "{ref}" names the VPC and subnets that exist in the AWS endpoint'))
def awscluster_matches_aws(world: World, ref: str) -> None:
    docs = list(yaml.safe_load_all(world.git("show", f"{ref}:clusters/demo/awscluster.yaml")))
    aws_cluster = next(d for d in docs if d and d["kind"] == "AWSCluster")
    assert aws_cluster["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1beta2"
    network = aws_cluster["spec"]["network"]
    vpc_id = network["vpc"]["id"]
    subnet_ids = {s["id"] for s in network["subnets"]}
    assert all(set(s) == {"id"} for s in network["subnets"]), "subnets must be named by id only"

    ec2 = boto3.client(
        "ec2",
        endpoint_url=world.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    vpcs = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert len(vpcs) == 1
    existing = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    assert subnet_ids == {s["SubnetId"] for s in existing}
    assert aws_cluster["spec"]["bastion"]["enabled"] is False


@then("it reports that the network and the fleet are unchanged")
def reports_nothing_changed(world: World) -> None:
    assert world.last is not None
    output = world.last.stderr + world.last.stdout
    assert "network unchanged" in output
    assert "nothing to commit" in output


@then("the fleet's branches are as they were")
def refs_unchanged(world: World) -> None:
    assert world.refs() == world.refs_before


@then("every run cloned the fleet once")
def one_clone_per_run(world: World) -> None:
    # The first run creates the fleet in place, with nothing to clone from; every run then clones it once.
    assert world.clones == [1] * len(world.clones), world.clones


def small_spec(name: str, replicas: int) -> str:
    """The quickest network to build: one zone, no bastion, no interface endpoints."""
    return yaml.safe_dump(
        {
            "name": name,
            "network": {"zones": 1, "natGateways": "single", "endpoints": ["s3"]},
            "bastion": {"enabled": False},
            "controlPlane": {"replicas": 1, "instanceType": "m6i.large"},
            "workers": [{"name": "default", "replicas": replicas, "instanceType": "m6i.large"}],
        },
        sort_keys=False,
    )


def spec_path(world: World, name: str) -> Path:
    return world.workdir / f"{name}.yaml"


@given(parsers.parse('a spec for "{name}" with {replicas:d} replicas in pool "{pool}"'))
@when(parsers.parse('the spec for "{name}" asks for {replicas:d} replicas in pool "{pool}"'))
def write_spec(world: World, name: str, replicas: int, pool: str) -> None:
    assert pool == "default"
    spec_path(world, name).write_text(small_spec(name, replicas))


@when(parsers.parse('I run new-cluster "{name}" with that spec'))
def new_cluster_with_spec(world: World, name: str) -> None:
    world.pipeline("new-cluster", name, "--spec", str(spec_path(world, name)))
