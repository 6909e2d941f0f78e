"""The run journal: one record per run, each stage's input fingerprint and outcome, written atomically.

A run holds its cluster through an OS file lock, so a second run for the same cluster is refused
while the first lives, and a killed run can never leave the lock behind. A record still saying
"running" whose lock nobody holds was killed: it reads as "interrupted".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import Interrupted, RunInProgress


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


INTERRUPTED = "interrupted"
_ERROR_SHOWN = 100


@dataclass(frozen=True)
class Unfinished:
    """A run that did not finish: where the next run of the same command picks up."""

    run: str
    status: str  # "failed" or "interrupted"
    stage: str  # the first stage it did not complete
    error: str
    stages: Mapping[str, Mapping[str, Any]]

    def done(self, stage: str, fingerprint: str) -> Mapping[str, Any] | None:
        """What the run recorded for `stage`, if it completed it from the same inputs."""
        found = self.stages.get(stage)
        return found if found is not None and found.get("inputs") == fingerprint else None

    def describe(self) -> str:
        # The error was shown in full when that run failed; a reminder is enough here.
        error = self.error if len(self.error) <= _ERROR_SHOWN else self.error[: _ERROR_SHOWN - 1] + "…"
        how = "was interrupted" if self.status == INTERRUPTED else f"failed ({error})"
        return f"run {self.run} {how} at stage {self.stage}"


@dataclass
class Journal:
    path: Path
    record: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None

    def unfinished(self, stage_order: Sequence[str]) -> Unfinished | None:
        """The previous run of this command, if it stopped before finishing."""
        before = self.previous
        if not before or before.get("command") != self.record["command"]:
            return None
        status = before.get("status")
        if status not in ("failed", INTERRUPTED):
            return None
        stages = before.get("stages", {})
        stage = next((s for s in stage_order if s not in stages), stage_order[-1])
        return Unfinished(str(before["run"]), str(status), stage, str(before.get("error", "")), stages)

    def stage(self, name: str, fingerprint: str, outcome: Mapping[str, Any]) -> None:
        self.record.setdefault("stages", {})[name] = {"inputs": fingerprint, **outcome}
        self._save()

    def finish(self, status: str, **details: Any) -> None:
        self.record.update(status=status, finished=_now(), **details)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise


def last_run(journal_dir: Path, cluster: str) -> dict[str, Any] | None:
    """The cluster's last run record; one left "running" by a dead process reads as interrupted."""
    data = _read(journal_dir / f"{cluster}.json")
    if data is not None and data.get("status") == "running" and not _held(journal_dir / f"{cluster}.lock"):
        data["status"] = INTERRUPTED
    return data


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _held(lock_path: Path) -> bool:
    try:
        with lock_path.open("r") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def run(journal_dir: Path, cluster: str, command: str) -> Iterator[Journal]:
    """Hold the cluster for one run and journal it; the lock dies with the process."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    lock_path = journal_dir / f"{cluster}.lock"
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another run"
            raise RunInProgress(f"cluster '{cluster}' is held by run {holder}; wait for it to finish") from None
        run_id = new_run_id()
        lock.seek(0)
        lock.truncate()
        lock.write(f"{run_id} (pid {os.getpid()})\n")
        lock.flush()
        path = journal_dir / f"{cluster}.json"
        previous = _read(path)
        if previous is not None and previous.get("status") == "running":
            # This process holds the lock now, so the run that wrote "running" is dead.
            previous["status"] = INTERRUPTED
        journal = Journal(
            path,
            {"run": run_id, "cluster": cluster, "command": command, "started": _now(), "status": "running"},
            previous,
        )
        journal._save()
        try:
            yield journal
        except (KeyboardInterrupt, Interrupted):
            journal.finish(INTERRUPTED, error="interrupted")
            raise
        except BaseException as exc:
            journal.finish("failed", error=str(exc) or type(exc).__name__)
            raise
        finally:
            lock.seek(0)
            lock.truncate()


@contextlib.contextmanager
def hold(journal_dir: Path, cluster: str, doing: str) -> Iterator[None]:
    """Hold the cluster as a run does, journaling nothing: for work between runs that must not overlap one.

    Refused while a run of this machine holds it; the previous run's record stays the previous one.
    """
    journal_dir.mkdir(parents=True, exist_ok=True)
    with (journal_dir / f"{cluster}.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another run"
            raise RunInProgress(
                f"{doing} refused: cluster '{cluster}' is held by run {holder} on this machine; wait for it to finish"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{doing} (pid {os.getpid()})\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
