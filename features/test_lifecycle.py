"""A cluster's whole life on the local target: plan, update, delete, and several clusters at once."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys

import pytest
import yaml
from pytest_bdd import given, parsers, scenarios, then, when

from features.conftest import STATE_BUCKET, World, ec2, s3, small_spec, spec_path, verify_signed_by_trusted_key

scenarios("lifecycle.feature")

pytestmark = pytest.mark.slow


def state_versions(world: World, name: str) -> list[str]:
    listed = s3(world).list_object_versions(Bucket=STATE_BUCKET, Prefix=f"clusters/{name}/")
    return sorted(v["VersionId"] for v in listed.get("Versions", []))


def vpc_of(world: World, name: str, ref: str = "main") -> str:
    docs = yaml.safe_load_all(world.git("show", f"{ref}:clusters/{name}/awscluster.yaml"))
    return str(next(d for d in docs if d and d["kind"] == "AWSCluster")["spec"]["network"]["vpc"]["id"])


def run_together(world: World, commands: list[list[str]]) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=world.workdir,
            env=world.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    world.together = []
    for child, args in zip(children, commands, strict=True):
        out, err = child.communicate(timeout=600)
        world.together.append(subprocess.CompletedProcess(args, child.returncode, out, err))
    world.history.extend(world.together)


@given(parsers.parse('I ran new-cluster "{name}" with that spec and approved it'))
def created_and_approved(world: World, name: str) -> None:
    created = world.pipeline("new-cluster", name, "--spec", str(spec_path(world, name)))
    assert created.returncode == 0, created.stderr
    approved = world.pipeline("approve", name)
    assert approved.returncode == 0, approved.stderr
    world.vpc = vpc_of(world, name)


def plan_hash(world: World) -> str:
    """The hash the last plan printed, remembered for the runs that apply it."""
    assert world.last is not None
    printed = re.search(r"^Plan hash: (sha256:[0-9a-f]{64})$", world.last.stdout, re.MULTILINE)
    assert printed is not None, world.last.stdout
    world.plan_hashes.append(printed[1])
    return printed[1]


def vpc_count(world: World) -> int:
    return len(ec2(world).describe_vpcs()["Vpcs"])


def applied(world: World, name: str) -> dict[str, object]:
    """What an apply or a commit would change: the fleet's refs, the state object's versions, the VPCs.
    The lock file beside the state is left out: a refused run's plan takes the lock, as an apply's does."""
    key = f"clusters/{name}/network.tfstate"
    listed = s3(world).list_object_versions(Bucket=STATE_BUCKET, Prefix=key).get("Versions", [])
    state = sorted(v["VersionId"] for v in listed if v["Key"] == key)
    return {"refs": world.refs(), "state": state, "vpcs": vpc_count(world)}


@given(parsers.parse('I planned "{name}", ran new-cluster with that plan\'s hash and approved it'))
def planned_created_and_approved(world: World, name: str) -> None:
    # The network does not exist yet: the plan saved to a file is what the run applies, whole.
    planned = world.pipeline("plan", name, "--spec", str(spec_path(world, name)))
    assert planned.returncode == 4, planned.stderr
    created = world.pipeline(
        "new-cluster", name, "--spec", str(spec_path(world, name)), "--expect-plan", plan_hash(world)
    )
    assert created.returncode == 0, created.stderr
    approved = world.pipeline("approve", name)
    assert approved.returncode == 0, approved.stderr
    world.vpc = vpc_of(world, name)


@when(parsers.parse('I run new-cluster "{name}" with that spec, expecting the {which} plan\'s hash'))
def new_cluster_expecting(world: World, name: str, which: str) -> None:
    world.before = applied(world, name)
    expected = world.plan_hashes[0 if which == "first" else -1]
    world.pipeline("new-cluster", name, "--spec", str(spec_path(world, name)), "--expect-plan", expected)


@then("the run refuses as the plan differs, having applied and committed nothing")
def refused_as_the_plan_differs(world: World) -> None:
    assert world.last is not None
    assert world.last.returncode == 5, world.last.stderr
    assert f"not the reviewed {world.plan_hashes[0]}; " in world.last.stderr, world.last.stderr
    assert "nothing was applied" in world.last.stderr
    assert world.before == applied(world, "life")


@when(parsers.parse('I plan "{name}" with that spec'))
def plan(world: World, name: str) -> None:
    journal = world.workdir / ".pipeline" / "runs" / f"{name}.json"
    world.before = {
        "refs": world.refs(),
        "state": state_versions(world, name),
        "journal": journal.read_text(),
        "buckets": sorted(b["Name"] for b in s3(world).list_buckets()["Buckets"]),
    }
    world.pipeline("plan", name, "--spec", str(spec_path(world, name)))
    plan_hash(world)


@then("the plan exits with the changes code")
def plan_has_changes(world: World) -> None:
    assert world.last is not None
    assert world.last.returncode == 4, world.last.stderr


@then(parsers.parse('the plan shows pool "{pool}" going from {before:d} to {after:d} replicas and no network change'))
def plan_shows_replicas(world: World, pool: str, before: int, after: int) -> None:
    assert world.last is not None
    text = world.last.stdout
    assert f"-  replicas: {before}" in text and f"+  replicas: {after}" in text, text
    assert "clusters/life/workers.yaml" in text
    assert "Network: 0 to add, 0 to change, 0 to destroy" in text, text


@then("nothing was written by the plan")
def plan_wrote_nothing(world: World) -> None:
    journal = world.workdir / ".pipeline" / "runs" / "life.json"
    assert world.before == {
        "refs": world.refs(),
        "state": state_versions(world, "life"),
        "journal": journal.read_text(),
        "buckets": sorted(b["Name"] for b in s3(world).list_buckets()["Buckets"]),
    }


@then(parsers.parse('the new commit on "{branch}" changes only "{path}"'))
def commit_changes_only(world: World, branch: str, path: str) -> None:
    assert world.git("diff", "--name-only", "main", branch).split() == [path]
    assert world.git("rev-list", "--count", f"main..{branch}").strip() == "1"


@when(parsers.parse('I run delete-cluster "{name}"'))
def delete_cluster(world: World, name: str) -> None:
    world.pipeline("delete-cluster", name)


@then(parsers.parse('the VPC of "{name}" still exists'))
def vpc_exists(world: World, name: str) -> None:
    found = ec2(world).describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [world.vpc]}])["Vpcs"]
    assert len(found) == 1
    assert f"clusters/{name}/" not in world.git("ls-tree", "-r", "--name-only", f"cluster/{name}")


@then(parsers.parse('the VPC of "{name}" no longer exists and its state is gone'))
def vpc_gone(world: World, name: str) -> None:
    assert ec2(world).describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [world.vpc]}])["Vpcs"] == []
    assert state_versions(world, name) == []
    assert f"clusters/{name}/" not in world.git("ls-tree", "-r", "--name-only", "main")


@then("it says the cluster is already gone")
def already_gone(world: World) -> None:
    assert world.last is not None
    assert "already gone" in world.last.stdout + world.last.stderr


@when(parsers.parse("I run new-cluster for {count:d} clusters at the same time"))
def many_new_clusters(world: World, count: int) -> None:
    world.names = [f"race{i:02d}" for i in range(1, count + 1)]
    for name in world.names:
        spec_path(world, name).write_text(small_spec(name, 1))
    run_together(world, [["new-cluster", name, "--spec", str(spec_path(world, name))] for name in world.names])


@when("I approve them all at the same time")
def many_approvals(world: World) -> None:
    run_together(world, [["approve", name] for name in world.names])


@then("every run succeeds")
def all_succeed(world: World) -> None:
    failed = [r.stderr.splitlines()[-2:] for r in world.together if r.returncode != 0]
    assert len(world.together) == len(world.names) and not failed, failed


@then("each branch holds a commit signed by a trusted key")
def each_branch_signed(world: World) -> None:
    for name in world.names:
        verify_signed_by_trusted_key(world, f"cluster/{name}")


@then("main holds every cluster with non-overlapping CIDRs")
def main_holds_all(world: World) -> None:
    networks = []
    for name in world.names:
        docs = yaml.safe_load_all(world.git("show", f"main:clusters/{name}/cluster.yaml"))
        cluster = next(d for d in docs if d and d["kind"] == "Cluster")
        networks.append(ipaddress.ip_network(cluster["metadata"]["annotations"]["fleet.pipeline/vpc-cidr"]))
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :]), networks


@then("the list shows every cluster signed by a trusted key")
def listed(world: World) -> None:
    result = world.pipeline("list", "--json")
    assert result.returncode == 0, result.stderr
    shown = {entry["name"]: entry for entry in json.loads(result.stdout)["clusters"]}
    assert sorted(shown) == sorted(world.names)
    signers = {shown[name]["signature"] for name in world.names}
    assert len(signers) == 1 and re.fullmatch(r"[0-9A-F]{40}", signers.pop())
