"""The run journal's copy in the state bucket, on the moto server over HTTPS: two machines' state dirs, one bucket."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import aws, journal, network, render
from pipeline.errors import RunInProgress
from pipeline.model import AwsAccess, PlanSummary
from pipeline.shared_journal import BucketCopy

CREDENTIALS = (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"))
STAGES = ("spec", "network", "render", "commit")
NETWORK = network.NetworkCheckpoint("vpc-1", PlanSummary(12, 0, 0), 4, "sha256:outputs")


@pytest.fixture
def copy(moto_endpoint: str) -> BucketCopy:
    """Where the cluster's record goes, in a bucket of its own that does not exist yet."""
    access = AwsAccess(region="us-east-1", endpoint=moto_endpoint, env=CREDENTIALS)
    return BucketCopy(access, f"journal-{uuid.uuid4().hex[:12]}", network.journal_key("demo"))


def _in_bucket(copy: BucketCopy) -> dict[str, Any] | None:
    found = copy.read()
    return None if found is None else json.loads(found[0])


def _fail_after_network(state_dir: Path, copy: BucketCopy) -> str:
    """A run on one machine that stops after its network stage; its run id."""
    with pytest.raises(ValueError), journal.run(state_dir, "demo", "new-cluster") as record:
        record.share(copy)
        record.stage("spec", "sha256:spec", render.RenderCheckpoint("unused"))
        record.stage("network", "sha256:spec", NETWORK)
        raise ValueError("the fleet refused the push")
    return str(record.record["run"])


def test_a_run_on_another_machine_picks_up_what_a_failed_run_left(tmp_path: Path, copy: BucketCopy):
    aws.ensure_state_bucket(copy.access, copy.bucket)
    failed = _fail_after_network(tmp_path / "a", copy)
    assert (_in_bucket(copy) or {})["status"] == "failed"

    # Another machine: an empty state dir, the same bucket.
    with journal.run(tmp_path / "b", "demo", "new-cluster") as record:
        assert record.unfinished(STAGES) is None  # nothing on this machine
        record.share(copy)
        unfinished = record.unfinished(STAGES)
        record.finish("succeeded")
    assert unfinished is not None
    assert (unfinished.run, unfinished.stage, unfinished.where) == (failed, "render", copy.where)
    assert unfinished.describe() == f"run {failed} failed (the fleet refused the push) at stage render"
    assert unfinished.done("network", "sha256:spec", network.NetworkCheckpoint) == NETWORK
    # The local file is the cache of what the bucket holds.
    assert json.loads((tmp_path / "b" / "demo.json").read_text()) == _in_bucket(copy) == record.record


def test_a_run_killed_while_running_reads_as_interrupted_elsewhere(tmp_path: Path, copy: BucketCopy):
    aws.ensure_state_bucket(copy.access, copy.bucket)
    # What a killed process leaves: the bucket's copy still says "running", and no lock is held on any machine.
    with journal.run(tmp_path / "a", "demo", "new-cluster") as killed:
        killed.share(copy)
        killed.stage("spec", "sha256:spec", render.RenderCheckpoint("unused"))
    assert (_in_bucket(copy) or {})["status"] == "running"

    with journal.run(tmp_path / "b", "demo", "new-cluster") as record:
        record.share(copy)
        unfinished = record.unfinished(STAGES)
    assert unfinished is not None
    assert (unfinished.run, unfinished.status, unfinished.stage) == (
        killed.record["run"],
        journal.INTERRUPTED,
        "network",
    )


def test_before_the_bucket_exists_the_record_stays_local_and_goes_up_whole_once_it_does(
    tmp_path: Path, copy: BucketCopy
):
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        record.share(copy)
        record.stage("spec", "sha256:spec", render.RenderCheckpoint("unused"))
        assert _in_bucket(copy) is None
        aws.ensure_state_bucket(copy.access, copy.bucket)  # as the network stage does before Terraform runs
        record.stage("network", "sha256:spec", NETWORK)
        assert set((_in_bucket(copy) or {})["stages"]) == {"spec", "network"}
        record.finish("succeeded")
    assert _in_bucket(copy) == json.loads((tmp_path / "demo.json").read_text())


@dataclass
class _ReadBefore:
    """The bucket's copy as a run found it when it read, before another run wrote; every later read is live."""

    copy: BucketCopy
    seen: tuple[bytes, str] | None

    @property
    def where(self) -> str:
        return self.copy.where

    def read(self) -> tuple[bytes, str] | None:
        seen, self.seen = self.seen, None
        return seen or self.copy.read()

    def write(self, body: bytes, replacing: str | None) -> str | None:
        return self.copy.write(body, replacing)


def test_of_two_runs_that_read_the_same_record_only_the_first_to_write_goes_on(tmp_path: Path, copy: BucketCopy):
    aws.ensure_state_bucket(copy.access, copy.bucket)
    _fail_after_network(tmp_path / "a", copy)
    both_read = copy.read()
    with journal.run(tmp_path / "b", "demo", "new-cluster") as first, journal.run(tmp_path / "c", "demo", "x") as late:
        first.share(copy)
        with pytest.raises(RunInProgress) as refused:
            late.share(_ReadBefore(copy, both_read))
        first.finish("succeeded")
    message = str(refused.value)
    assert "\n" not in message
    assert f"taken over by run {first.record['run']} on " in message
    assert f"which wrote {copy.where} since this run did; this run stops here" in message
    assert _in_bucket(copy) == first.record


def test_a_run_overtaken_by_a_run_on_another_machine_stops_at_its_next_checkpoint(tmp_path: Path, copy: BucketCopy):
    aws.ensure_state_bucket(copy.access, copy.bucket)
    with pytest.raises(RunInProgress) as refused, journal.run(tmp_path / "a", "demo", "new-cluster") as slow:
        slow.share(copy)
        with journal.run(tmp_path / "b", "demo", "new-cluster") as fresh:
            fresh.share(copy)  # takes "running" elsewhere as interrupted
            fresh.finish("succeeded")
        slow.stage("network", "sha256:spec", NETWORK)
    assert f"taken over by run {fresh.record['run']}" in str(refused.value)
    # The overtaken run's end is kept on its own machine; the bucket keeps the run that took over.
    assert (_in_bucket(copy) or {})["run"] == fresh.record["run"]
    assert (journal.last_run(tmp_path / "a", "demo") or {})["status"] == "failed"
