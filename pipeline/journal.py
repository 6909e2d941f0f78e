"""The run journal: one record per run, each stage's input fingerprint and outcome, written atomically.

A run holds its cluster through an OS file lock, so a second run for the same cluster is refused
while the first lives, and a killed run can never leave the lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import RunInProgress


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class Journal:
    path: Path
    record: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str, fingerprint: str, outcome: Mapping[str, Any]) -> None:
        self.record.setdefault("stages", {})[name] = {"inputs": fingerprint, **outcome}
        self._save()

    def finish(self, status: str, **details: Any) -> None:
        self.record.update(status=status, finished=_now(), **details)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def last_run(journal_dir: Path, cluster: str) -> dict[str, Any] | None:
    path = journal_dir / f"{cluster}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


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
        journal = Journal(
            journal_dir / f"{cluster}.json",
            {"run": run_id, "cluster": cluster, "command": command, "started": _now(), "status": "running"},
        )
        journal._save()
        try:
            yield journal
        except BaseException as exc:
            journal.finish("failed", error=str(exc) or type(exc).__name__)
            raise
        finally:
            lock.seek(0)
            lock.truncate()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
