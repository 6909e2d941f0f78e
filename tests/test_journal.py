from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import journal
from pipeline.errors import RunInProgress


def test_a_run_records_its_stages_and_outcome(tmp_path: Path):
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        record.stage("network", "sha256:abc", {"vpc": "vpc-1"})
        record.finish("succeeded", commit="c0ffee")
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["status"] == "succeeded"
    assert saved["stages"]["network"] == {"inputs": "sha256:abc", "vpc": "vpc-1"}
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


def _fail_at_render(journal_dir: Path) -> None:
    with pytest.raises(ValueError), journal.run(journal_dir, "demo", "new-cluster") as record:
        record.stage("spec", "sha256:spec", {})
        record.stage("network", "sha256:spec", {"state_serial": 7})
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
    assert unfinished.done("network", "sha256:spec") == {"inputs": "sha256:spec", "state_serial": 7}
    assert unfinished.done("network", "sha256:other-spec") is None
    assert unfinished.done("render", "sha256:spec") is None


def test_nothing_is_picked_up_after_a_success_or_from_another_command(tmp_path: Path):
    _fail_at_render(tmp_path)
    with journal.run(tmp_path, "demo", "delete-cluster") as record:
        assert record.unfinished(STAGES) is None
        record.finish("succeeded")
    with journal.run(tmp_path, "demo", "new-cluster") as record:
        assert record.unfinished(STAGES) is None
