"""A run stopped mid-apply, by Ctrl-C or by SIGKILL to its process group, and the runs after it."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_bdd import parsers, scenario, then, when

from features.conftest import STATE_BUCKET, World, ec2, s3, spec_path
from pipeline import journal
from pipeline.errors import EXIT_BLOCKED, EXIT_INTERRUPTED, EXIT_OK


@pytest.mark.reliability("fault", "SIGKILL to the process group mid-apply, then Ctrl-C (SIGINT) mid-apply")
@scenario("faults.feature", "A run killed mid-apply, then one stopped by Ctrl-C: the next runs finish the cluster")
def test_a_killed_and_an_interrupted_apply() -> None:
    """Bound by name to carry the reliability marker; its steps are below."""


pytestmark = pytest.mark.slow

VPC_CREATED = re.compile(r"aws_vpc\.this: Creation complete")
VPC_CREATING = re.compile(r"aws_vpc\.this: Creating\.\.\.")
# What a blocked run says to do: the command after "with: ", to the end of the line.
CLEARED_WITH = re.compile(r"(?:remove them|release it) with: (.+)$", re.MULTILINE)


def _stop_mid_apply(
    world: World, name: str, sig: signal.Signals, when: re.Pattern[str] = VPC_CREATED
) -> subprocess.CompletedProcess[str]:
    """Run new-cluster in its own process group, as a terminal would, and signal the group mid-apply.

    A run that ends before Terraform creates the VPC (a blocked one) is returned as it ended.
    """
    argv = [sys.executable, "-m", "pipeline", "new-cluster", name, "--spec", str(spec_path(world, name)), "--verbose"]
    child = subprocess.Popen(
        argv,
        cwd=world.workdir,
        env=world.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stderr is not None and child.stdout is not None
    seen: list[str] = []
    for line in child.stderr:
        seen.append(line)
        if when.search(line):
            os.killpg(child.pid, sig)
            break
    rest, out = child.stderr.read(), child.stdout.read()
    child.wait(timeout=300)
    child.stderr.close()
    child.stdout.close()
    result = subprocess.CompletedProcess(argv, child.returncode, out, "".join(seen) + rest)
    world.last = result
    world.history.append(result)
    return result


def _blocker(world: World, result: subprocess.CompletedProcess[str]) -> str:
    """The command a blocked run named; the run's error line is kept for the report."""
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    world.blocked.append(error)
    found = CLEARED_WITH.search(error)
    assert found, error
    return found.group(1)


@when(
    parsers.parse(
        'I run new-cluster "{name}", running each command a blocked run names, '
        "and press Ctrl-C once Terraform has created its VPC"
    )
)
def ctrl_c(world: World, name: str) -> None:
    for _ in range(4):
        result = _stop_mid_apply(world, name, signal.SIGINT)
        if result.returncode != EXIT_BLOCKED:
            return
        _clear(world, _blocker(world, result))
    pytest.fail(f"still blocked after clearing {world.blocked}")


@when(parsers.parse('new-cluster "{name}" is killed with its process group as Terraform creates its VPC'))
def killed(world: World, name: str) -> None:
    result = _stop_mid_apply(world, name, signal.SIGKILL, VPC_CREATING)
    assert result.returncode == -signal.SIGKILL


@then("the run stops with exit code 130 and says it was interrupted")
def interrupted(world: World) -> None:
    assert world.last is not None
    assert world.last.returncode == EXIT_INTERRUPTED, world.last.stderr[-2000:]
    assert "error: interrupted" in world.last.stderr
    assert "Traceback" not in world.last.stderr


@then(parsers.parse('the state of "{name}" holds the VPC and no lock is left'))
def state_saved(world: World, name: str) -> None:
    bucket = s3(world)
    state = json.loads(bucket.get_object(Bucket=STATE_BUCKET, Key=f"clusters/{name}/network.tfstate")["Body"].read())
    vpcs = [r for r in state["resources"] if r["type"] == "aws_vpc"]
    assert len(vpcs) == 1 and vpcs[0]["instances"], "Terraform did not save the VPC it created"
    assert _lock_file(world, name) is None


def _last_run(world: World, name: str) -> dict[str, Any]:
    record = journal.last_run(Path(world.env["PIPELINE_STATE_DIR"]) / "runs", name)
    assert record is not None
    return record


@then(parsers.parse('the journal says the run of "{name}" was interrupted at stage network'))
def journal_interrupted(world: World, name: str) -> None:
    record = _last_run(world, name)
    assert record["status"] == journal.INTERRUPTED
    assert "spec" in record["stages"] and "network" not in record["stages"]


@then("the first run after the killed one said it resumes from stage network")
def says_resuming(world: World) -> None:
    killed = next(i for i, run in enumerate(world.history) if run.returncode == -signal.SIGKILL)
    after = world.history[killed + 1].stderr
    assert re.search(r"resuming from stage network: run \S+ was interrupted at stage network", after), after


@when(parsers.parse('I run new-cluster "{name}" until it succeeds, running each command a blocked run names'))
def until_it_succeeds(world: World, name: str) -> None:
    for _ in range(4):
        result = world.pipeline("new-cluster", name, "--spec", str(spec_path(world, name)))
        if result.returncode != EXIT_BLOCKED:
            break
        _clear(world, _blocker(world, result))
    assert world.last is not None
    assert world.last.returncode == 0, world.last.stderr[-3000:]


def _clear(world: World, command: str) -> None:
    """Run what the blocked run said, as CI would: nothing answers a prompt."""
    done = _run_printed(world, command)
    assert done.returncode == 0, done.stdout + done.stderr


def _run_printed(world: World, command: str) -> subprocess.CompletedProcess[str]:
    """`command` word for word, stdin closed; `python` is the one the pipeline is installed in."""
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "pipeline"], command
    return subprocess.run(
        [sys.executable, *words[1:]],
        cwd=world.workdir,
        env=world.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def _lock_file(world: World, name: str) -> dict[str, Any] | None:
    try:
        body = s3(world).get_object(Bucket=STATE_BUCKET, Key=f"clusters/{name}/network.tfstate.tflock")["Body"]
    except s3(world).exceptions.NoSuchKey:
        return None
    found: dict[str, Any] = json.loads(body.read())
    return found


@when(
    parsers.parse(
        'I run new-cluster "{name}", running each command a blocked run names, until the state lock blocks it'
    )
)
def until_locked(world: World, name: str) -> None:
    # What a kill left besides the lock (resources its state missed) may block a run first.
    for _ in range(3):
        result = world.pipeline("new-cluster", name, "--spec", str(spec_path(world, name)))
        assert result.returncode == EXIT_BLOCKED, result.stderr[-3000:]
        command = _blocker(world, result)
        if " unlock " in command:
            return
        _clear(world, command)
    pytest.fail(f"no run was blocked by the state lock: {world.blocked}")


def _printed_unlock(world: World) -> str:
    found = CLEARED_WITH.search(world.blocked[-1])
    assert found, world.blocked[-1]
    return found.group(1)


@then(parsers.parse('the lock error names the unlock of that very lock of "{name}", with --force as the lock is young'))
def names_unlock(world: World, name: str) -> None:
    lock = _lock_file(world, name)
    assert lock is not None, "the killed run's Terraform left no lock"
    error = world.blocked[-1]
    assert f"the Terraform state of cluster '{name}' is locked (lock {lock['ID']}, taken by " in error, error
    assert "; if the run that took it is dead, release it with: " in error, error
    assert _printed_unlock(world) == f"python -m pipeline unlock {name} --region us-east-1 --lock {lock['ID']} --force"


@when("I run that unlock command without its --force, with stdin closed")
def unlock_unforced(world: World) -> None:
    world.last = _run_printed(world, _printed_unlock(world).removesuffix(" --force"))


@then(parsers.parse('it is refused in one line, and the lock of "{name}" is still held'))
def unlock_refused(world: World, name: str) -> None:
    assert world.last is not None
    assert world.last.returncode == EXIT_BLOCKED, world.last.stderr
    errors = [line for line in world.last.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "younger than 15 minutes" in errors[0] and "--force" in errors[0], errors
    assert _lock_file(world, name) is not None


@when("I run that unlock command exactly as printed, with stdin closed")
def unlock_as_printed(world: World) -> None:
    world.last = _run_printed(world, _printed_unlock(world))


@then(parsers.parse('it released the lock of "{name}"'))
def unlock_released(world: World, name: str) -> None:
    assert world.last is not None
    assert world.last.returncode == EXIT_OK, world.last.stderr
    assert f"cluster '{name}': released lock " in world.last.stdout
    assert _lock_file(world, name) is None


@then("every blocked run named what blocks it and one command that clears it")
def blocked_runs_named_causes(world: World, record_property) -> None:
    causes = ["orphans" if "remove-orphans" in e else "lock" if "pipeline unlock" in e else e for e in world.blocked]
    assert set(causes) <= {"orphans", "lock"}, world.blocked
    assert "lock" in causes, "a killed apply leaves its lock held, and no run named it"
    record_property(
        "outcome",
        f"runs exited {[r.returncode for r in world.history]}; the blocked ones named {causes}, each cleared by "
        "the command it named; the last built the cluster with one VPC",
    )


@then(parsers.parse('the account holds exactly one VPC for "{name}", the one its manifests name'))
def one_vpc(world: World, name: str) -> None:
    tagged = ec2(world).describe_vpcs(Filters=[{"Name": "tag:fleet-pipeline/cluster", "Values": [name]}])["Vpcs"]
    docs = yaml.safe_load_all(world.git("show", f"cluster/{name}:clusters/{name}/awscluster.yaml"))
    named = next(d for d in docs if d and d["kind"] == "AWSCluster")["spec"]["network"]["vpc"]["id"]
    assert [v["VpcId"] for v in tagged] == [named]
