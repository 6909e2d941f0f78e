"""`unlock`: Terraform's S3 lock file released as force-unlock would, refused while it may be a live run's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline import access as target_access
from pipeline import aws, cli, config, network, node_iam, state_lock
from pipeline.config import STALE_LOCK_AFTER
from pipeline.errors import EXIT_BAD_INPUT, EXIT_BLOCKED, EXIT_OK
from tests.fixtures import REPO_ROOT

REGION = "us-east-1"
NAME = "web"
LOCK_KEY = f"clusters/{NAME}/network.tfstate.tflock"
ACCOUNT_LOCK_KEY = "account/node-iam.tfstate.tflock"


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """A state bucket of its own for the clusters' and the account's state, as PIPELINE_*_STATE_BUCKET name it."""
    name = f"tfstate-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("PIPELINE_STATE_BUCKET", name)
    monkeypatch.setenv("PIPELINE_ACCOUNT_STATE_BUCKET", name)
    monkeypatch.chdir(tmp_path)
    _s3(moto_endpoint).create_bucket(Bucket=name)
    return name


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )


def _lock(endpoint: str, bucket: str, key: str, age: timedelta | None, lock_id: str | None = None) -> str:
    """A lock file as Terraform 1.11's use_lockfile writes it; its ID."""
    lock_id = lock_id or str(uuid.uuid4())
    info: dict[str, str] = {
        "ID": lock_id,
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": "runner@ci-7",
        "Version": "1.11.4",
        "Path": f"{bucket}/{key.removesuffix('.tflock')}",
    }
    if age is not None:
        info["Created"] = (datetime.now(UTC) - age).isoformat().replace("+00:00", "Z")
    _s3(endpoint).put_object(Bucket=bucket, Key=key, Body=json.dumps(info).encode())
    return lock_id


def _held(endpoint: str, bucket: str, key: str) -> str | None:
    try:
        body = _s3(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    except _s3(endpoint).exceptions.NoSuchKey:
        return None
    return str(json.loads(body)["ID"])


def _unlock(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["unlock", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_no_lock_is_said_and_is_not_a_failure(bucket, moto_endpoint, capsys):
    code, out, _ = _unlock(capsys, NAME, "--region", REGION, "--json")

    assert code == EXIT_OK
    result = json.loads(out)
    assert result["released"] is None
    assert result["lock_file"] == f"s3://{bucket}/{LOCK_KEY}"


def test_a_young_lock_is_kept_without_force_and_released_with_it(bucket, moto_endpoint, capsys):
    lock_id = _lock(moto_endpoint, bucket, LOCK_KEY, timedelta(seconds=30))

    code, _, err = _unlock(capsys, NAME, "--region", REGION)

    assert code == EXIT_BLOCKED
    line = _error_line(err)
    assert re.search(f"lock {lock_id}, taken by runner@ci-7 for apply 3[0-9] s ago", line), line
    assert "younger than 15 minutes" in line and "--force" in line
    assert _held(moto_endpoint, bucket, LOCK_KEY) == lock_id

    code, out, _ = _unlock(capsys, NAME, "--region", REGION, "--lock", lock_id, "--force", "--json")

    assert code == EXIT_OK
    assert json.loads(out)["released"]["id"] == lock_id
    assert _held(moto_endpoint, bucket, LOCK_KEY) is None


def test_a_lock_older_than_the_bound_is_released_without_force(bucket, moto_endpoint, capsys):
    lock_id = _lock(moto_endpoint, bucket, LOCK_KEY, STALE_LOCK_AFTER + timedelta(minutes=1))

    code, out, _ = _unlock(capsys, NAME, "--region", REGION)

    assert code == EXIT_OK
    assert out.startswith(f"cluster '{NAME}': released lock {lock_id}, taken by runner@ci-7 for apply 16 min ago")
    assert _held(moto_endpoint, bucket, LOCK_KEY) is None


def test_a_lock_of_unknown_age_counts_as_young(bucket, moto_endpoint, capsys):
    lock_id = _lock(moto_endpoint, bucket, LOCK_KEY, None)

    code, _, err = _unlock(capsys, NAME, "--region", REGION)

    assert code == EXIT_BLOCKED
    assert "at a time it does not record" in _error_line(err)
    assert _held(moto_endpoint, bucket, LOCK_KEY) == lock_id


def test_a_lock_other_than_the_one_named_is_kept_and_named(bucket, moto_endpoint, capsys):
    lock_id = _lock(moto_endpoint, bucket, LOCK_KEY, timedelta(hours=1))

    code, _, err = _unlock(capsys, NAME, "--region", REGION, "--lock", "0000-seen-before", "--force")

    assert code == EXIT_BLOCKED
    line = _error_line(err)
    assert "locked by another lock than 0000-seen-before" in line
    assert line.endswith(f"release it with: python -m pipeline unlock {NAME} --region {REGION} --lock {lock_id}")
    assert _held(moto_endpoint, bucket, LOCK_KEY) == lock_id


def test_the_region_comes_from_this_machines_last_run_or_is_asked_for(bucket, moto_endpoint, capsys, tmp_path):
    _lock(moto_endpoint, bucket, LOCK_KEY, timedelta(hours=1))

    code, _, err = _unlock(capsys, NAME)

    assert code == EXIT_BAD_INPUT
    assert "pass --region" in _error_line(err)

    work = tmp_path / "state" / "terraform" / NAME
    work.mkdir(parents=True)
    (work / network.VAR_FILE).write_text(json.dumps({"region": REGION}))
    code, _, _ = _unlock(capsys, NAME)

    assert code == EXIT_OK
    assert _held(moto_endpoint, bucket, LOCK_KEY) is None


def test_a_lock_taken_again_between_reading_and_deleting_is_left(bucket, moto_endpoint, tmp_path):
    access = target_access.for_target(config.load_settings(os.environ, tmp_path), REGION)
    _lock(moto_endpoint, bucket, LOCK_KEY, timedelta(hours=1))
    found = aws.read_object(access, bucket, LOCK_KEY)
    assert found is not None
    newer = _lock(moto_endpoint, bucket, LOCK_KEY, timedelta(0))

    assert not aws.delete_object_if(access, bucket, LOCK_KEY, found[1])
    assert _held(moto_endpoint, bucket, LOCK_KEY) == newer


@contextmanager
def _process_holding(code: str) -> Iterator[subprocess.Popen[str]]:
    """A real Python process that runs `code` (which takes an OS lock), says "held", and waits to be let go."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"{code}\n    print('held', flush=True)\n    sys.stdin.read()"],
        cwd=REPO_ROOT,
        env=os.environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_a_run_alive_on_this_machine_keeps_its_lock_unless_forced(bucket, moto_endpoint, capsys, tmp_path):
    lock_id = _lock(moto_endpoint, bucket, LOCK_KEY, timedelta(hours=1))
    journal_dir = tmp_path / "state" / "runs"
    run = (
        "import sys\nfrom pathlib import Path\nfrom pipeline import journal\n"
        f"with journal.run(Path({str(journal_dir)!r}), {NAME!r}, 'new-cluster'):"
    )

    with _process_holding(run) as holder:
        code, _, err = _unlock(capsys, NAME, "--region", REGION, "--lock", lock_id)

        assert code == EXIT_BLOCKED
        line = _error_line(err)
        assert line.startswith(f"error: unlock refused: cluster '{NAME}' is held by run ")
        assert f"(pid {holder.pid}) on this machine" in line
        assert line.endswith("or pass --force if it is stuck")
        assert _held(moto_endpoint, bucket, LOCK_KEY) == lock_id

        # A stuck run, not a dead one: forced, its lock goes while it lives, and the run is named.
        code, _, err = _unlock(capsys, NAME, "--region", REGION, "--lock", lock_id, "--force")

        assert code == EXIT_OK, err
        assert f"(pid {holder.pid}) on this machine" in err and "releasing its lock anyway (--force)" in err
        assert _held(moto_endpoint, bucket, LOCK_KEY) is None


def test_the_accounts_stack_lock_is_released_unless_a_run_here_applies_it(bucket, moto_endpoint, capsys, tmp_path):
    lock_id = _lock(moto_endpoint, bucket, ACCOUNT_LOCK_KEY, timedelta(seconds=5))
    work_dir = tmp_path / "state" / "terraform" / node_iam.WORK_DIR
    work_dir.mkdir(parents=True)
    applying = (
        "import sys\nfrom pathlib import Path\nfrom pipeline import node_iam\n"
        f"with node_iam._machine_lock(Path({str(work_dir)!r})):"
    )

    with _process_holding(applying):
        code, _, err = _unlock(capsys, "--account", "--lock", lock_id)

        assert code == EXIT_BLOCKED
        assert "being applied by a run on this machine" in _error_line(err)
        assert _held(moto_endpoint, bucket, ACCOUNT_LOCK_KEY) == lock_id

    code, out, _ = _unlock(capsys, "--account", "--lock", lock_id, "--force", "--json")

    assert code == EXIT_OK
    result = json.loads(out)
    assert result["account"] is True and result["released"]["id"] == lock_id
    assert _held(moto_endpoint, bucket, ACCOUNT_LOCK_KEY) is None


def test_a_lock_error_of_the_accounts_stack_names_unlock_account():
    output = (
        "Error: Error acquiring the state lock\n\nLock Info:\n  ID:        9b1d-account\n"
        "  Path:      b/account/node-iam.tfstate\n  Operation: OperationTypeApply\n  Who:       ci@runner\n"
        "  Version:   1.11.4\n  Created:   2026-12-03 06:00:00.123456789 +0000 UTC\n  Info:\n"
    )
    lock = state_lock.from_output(output)
    assert lock is not None
    scope = state_lock.Scope(None, "aws")

    old = state_lock.held_message(lock, scope, now=datetime(2026, 12, 3, 7, 0, 1, tzinfo=UTC))
    young = state_lock.held_message(lock, scope, now=datetime(2026, 12, 3, 6, 1, 0, 500000, tzinfo=UTC))

    assert old == (
        "the Terraform state of the account's node IAM stack is locked (lock 9b1d-account, taken by ci@runner "
        "for apply 60 min ago); if no run is in progress, release it with: "
        "python -m pipeline unlock --account --target aws --lock 9b1d-account"
    )
    assert young.endswith(
        "taken by ci@runner for apply 60 s ago); if the run that took it is dead, release it with: "
        "python -m pipeline unlock --account --target aws --lock 9b1d-account --force"
    )
