from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import allocation, commit, delete, journal, network, render, review, validate
from pipeline.errors import JournalInvalid, RunInProgress
from pipeline.model import PlanSummary


def test_a_run_records_its_stages_and_outcome(tmp_path: Path):
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        record.stage("render", "sha256:abc", render.RenderCheckpoint("sha256:manifests"))
        record.finish("succeeded", commit="c0ffee")
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["status"] == "succeeded"
    assert saved["stages"]["render"] == {"inputs": "sha256:abc", "manifests": "sha256:manifests"}
    assert journal.last_run(tmp_path, "demo") == saved


def test_a_failed_run_is_journaled_with_its_error(tmp_path: Path):
    with pytest.raises(ValueError), journal.run(tmp_path, "demo", "new-cluster"):
        raise ValueError("boom")
    saved = journal.last_run(tmp_path, "demo")
    assert saved is not None
    assert (saved["status"], saved["error"]) == ("failed", "boom")


def test_a_held_cluster_refuses_a_second_run_but_not_another_cluster(tmp_path: Path):
    with journal.run(tmp_path, "demo", "new-cluster") as first:
        with pytest.raises(RunInProgress, match=first.record["run"]), journal.run(tmp_path, "demo", "x"):
            pass
        with journal.run(tmp_path, "other", "new-cluster"):
            pass


def test_a_killed_run_leaves_no_lock_behind(tmp_path: Path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipeline import journal\n"
            "with journal.run(Path(sys.argv[1]), 'demo', 'new-cluster'):\n"
            "    print('held', flush=True); time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunInProgress), journal.run(tmp_path, "demo", "x"):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    assert (journal.last_run(tmp_path, "demo") or {}).get("status") == journal.INTERRUPTED
    deadline = time.monotonic() + 5
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        assert time.monotonic() < deadline
        assert record.record["status"] == "running"
        assert (journal.last_run(tmp_path, "demo") or {}).get("status") == "running"
        unfinished = record.unfinished(STAGES)
    assert unfinished is not None
    assert (unfinished.status, unfinished.stage) == (journal.INTERRUPTED, "spec")
    assert unfinished.describe().endswith("was interrupted at stage spec")


STAGES = ("spec", "network", "render", "commit")
NETWORK = network.NetworkCheckpoint("vpc-1", PlanSummary(3, 0, 0), 7, "sha256:outputs")


def _fail_at_render(journal_dir: Path) -> None:
    with pytest.raises(ValueError), journal.run(journal_dir, "demo", "new-cluster") as record:
        record.stage("spec", "sha256:spec", allocation.SpecCheckpoint("10.20.0.0/16"))
        record.stage("network", "sha256:spec", NETWORK)
        raise ValueError("kubectl missing")


def test_the_next_run_of_a_failed_command_picks_up_at_its_first_unfinished_stage(tmp_path: Path):
    _fail_at_render(tmp_path)
    failed = journal.last_run(tmp_path, "demo")
    assert failed is not None
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        unfinished = record.unfinished(STAGES)
        record.finish("succeeded")
    assert unfinished is not None
    assert (unfinished.run, unfinished.stage) == (failed["run"], "render")
    assert unfinished.describe() == f"run {unfinished.run} failed (kubectl missing) at stage render"
    assert unfinished.done("network", "sha256:spec", network.NetworkCheckpoint) == NETWORK
    assert unfinished.done("network", "sha256:other-spec", network.NetworkCheckpoint) is None
    assert unfinished.done("render", "sha256:spec", render.RenderCheckpoint) is None


def test_nothing_is_picked_up_after_a_success_or_from_another_command(tmp_path: Path):
    _fail_at_render(tmp_path)
    with journal.run(tmp_path, "demo", "delete-cluster") as record:
        assert record.unfinished(STAGES) is None
        record.finish("succeeded")
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        assert record.unfinished(STAGES) is None


CHECKPOINTS = (
    ("spec", allocation.SpecCheckpoint("10.20.0.0/16")),
    ("network", network.NetworkCheckpoint("vpc-1", PlanSummary(3, 1, 0), 7, "sha256:outputs")),
    ("render", render.RenderCheckpoint("sha256:manifests")),
    ("validate", validate.ValidateCheckpoint()),
    ("commit", commit.CommitCheckpoint("c0ffee", changed=True)),
    ("review", review.ReviewCheckpoint("https://github.example/acme/fleet/pull/1")),
    ("locate", delete.LocateCheckpoint(on_main=False)),
    ("destroy", delete.Teardown(branch_deleted=True, destroyed=False)),
)
ALL_STAGES = (*(name for name, _ in CHECKPOINTS), "after")


def _unfinished_after(journal_dir: Path, stages: tuple[tuple[str, journal.Checkpoint], ...]) -> journal.Unfinished:
    with pytest.raises(ValueError), journal.run(journal_dir, "demo", "new-cluster") as record:
        for name, checkpoint in stages:
            record.stage(name, f"sha256:{name}", checkpoint)
        raise ValueError("stopped")
    with journal.run(journal_dir, "demo", "new-cluster") as record:
        unfinished = record.unfinished(ALL_STAGES)
        record.finish("succeeded")
    assert unfinished is not None
    return unfinished


def test_each_stage_checkpoint_comes_back_from_the_record_as_it_went_in(tmp_path: Path):
    unfinished = _unfinished_after(tmp_path, CHECKPOINTS)
    assert unfinished.stage == "after"
    for name, checkpoint in CHECKPOINTS:
        assert unfinished.done(name, f"sha256:{name}", type(checkpoint)) == checkpoint
        assert type(checkpoint).from_json(json.loads(json.dumps(checkpoint.to_json()))) == checkpoint


def test_a_record_written_before_checkpoints_were_typed_still_resumes(tmp_path: Path):
    # As new-cluster wrote it then: each stage's keys beside its inputs, a run left "running" by a killed process.
    old = {
        "run": "20261201T101010Z-0a0b0c",
        "cluster": "demo",
        "command": "new-cluster",
        "started": "2026-12-01T10:10:10Z",
        "status": "running",
        "stages": {
            "spec": {"inputs": "sha256:spec", "cidr": "10.20.0.0/16"},
            "network": {
                "inputs": "sha256:spec",
                "vpc": "vpc-0123",
                "changes": {"add": 12, "change": 0, "destroy": 0},
                "state_serial": 4,
                "outputs": "sha256:outputs",
            },
        },
    }
    (tmp_path / "demo.json").write_text(json.dumps(old))
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        unfinished = record.unfinished(("spec", "network", "render"))
        record.finish("succeeded")
    assert unfinished is not None
    assert (unfinished.run, unfinished.status, unfinished.stage) == (old["run"], journal.INTERRUPTED, "render")
    assert unfinished.done("spec", "sha256:spec", allocation.SpecCheckpoint) == allocation.SpecCheckpoint(
        "10.20.0.0/16"
    )
    assert unfinished.done("network", "sha256:spec", network.NetworkCheckpoint) == network.NetworkCheckpoint(
        "vpc-0123", PlanSummary(12, 0, 0), 4, "sha256:outputs"
    )


def test_a_malformed_checkpoint_is_refused_in_one_line_naming_its_stage_and_field(tmp_path: Path):
    unfinished = _unfinished_after(tmp_path, (("network", render.RenderCheckpoint("sha256:not-a-network")),))
    with pytest.raises(JournalInvalid) as refused:
        unfinished.done("network", "sha256:network", network.NetworkCheckpoint)
    message = str(refused.value)
    assert "\n" not in message
    assert f"run record {tmp_path / 'demo.json'}: stage network: 'changes' is missing, not an object" in message
    assert message.endswith("delete it to start the cluster's next run afresh")


@pytest.mark.parametrize(
    ("kind", "data", "problem"),
    [
        (commit.CommitCheckpoint, {"commit": "c0ffee", "changed": "yes"}, "'changed' is 'yes', not true or false"),
        (allocation.SpecCheckpoint, {}, "'cidr' is missing, not a string"),
        (network.NetworkCheckpoint, {"vpc": "v", "changes": {"add": True}}, "'add' is True, not an integer"),
        (validate.ValidateCheckpoint, {"valid": False}, "'valid' is false"),
    ],
)
def test_each_checkpoint_names_the_field_its_json_lacks(
    kind: type[journal.Checkpoint], data: dict[str, object], problem: str
):
    with pytest.raises(journal.Malformed, match=re.escape(problem)):
        kind.from_json(data)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"run": 7, "command": "new-cluster", "status": "failed"}', "'run' is 7, not a string"),
        (
            '{"run": "r", "command": "new-cluster", "status": "failed", "stages": {"spec": {"cidr": "10.0.0.0/16"}}}',
            "'inputs' is missing, not a string",
        ),
    ],
)
def test_a_record_that_is_not_a_run_record_is_refused_before_the_run_starts(tmp_path: Path, body: str, problem: str):
    (tmp_path / "demo.json").write_text(body)
    with pytest.raises(JournalInvalid, match=re.escape(problem)) as refused, journal.run(tmp_path, "demo", "x"):
        pass
    assert "\n" not in str(refused.value)
    assert (tmp_path / "demo.json").read_text() == body  # left for the user to look at, not overwritten
