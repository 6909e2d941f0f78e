"""The run journal: one record per run, each stage's input fingerprint and checkpoint, written atomically.

A run holds its cluster on this machine through an OS file lock, so a second run for the same cluster
is refused while the first lives, and a killed run can never leave the lock behind. A record still
saying "running" whose lock nobody holds was killed: it reads as "interrupted".

A run may also keep its record in a shared copy (the state bucket, beside the cluster's Terraform
state): then a run on another machine picks up where this one stopped, and the file in the state
dir is this machine's cache of it. Each stage's module owns its checkpoint type and that type's
JSON form; the journal keeps the JSON and hands it back to the type that asks for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar

from pipeline.errors import Interrupted, JournalInvalid, PipelineError, RecordChanged, RunInProgress


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


INTERRUPTED = "interrupted"
_ERROR_SHOWN = 100
_FIX = "delete it to start the cluster's next run afresh"


class Checkpoint(Protocol):
    """What a stage leaves for a later run of the same inputs; its JSON form is the module's own."""

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self: ...


C = TypeVar("C", bound=Checkpoint)
T = TypeVar("T")


class Malformed(ValueError):
    """A checkpoint's JSON lacks a field or holds one of the wrong type; the journal says where."""


class Flat:
    """A checkpoint that is a frozen dataclass of str, int and bool fields: its JSON form is those fields by name."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        read = {"str": text, "int": integer, "bool": flag}
        values = {}
        for f in dataclasses.fields(cls):
            # Text under `from __future__ import annotations`, the type itself without.
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            values[f.name] = read[kind](data, f.name)
        return cls(**values)


def text(data: Mapping[str, Any], key: str) -> str:
    return _typed(data, key, str, "a string")


def integer(data: Mapping[str, Any], key: str) -> int:
    return _typed(data, key, int, "an integer")


def flag(data: Mapping[str, Any], key: str) -> bool:
    return _typed(data, key, bool, "true or false")


def mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] = _typed(data, key, dict, "an object")
    return found


def _typed(data: Mapping[str, Any], key: str, kind: type[T], what: str) -> T:
    value = data.get(key)
    # bool is an int to Python, never in a record.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Malformed(f"'{key}' is {'missing' if value is None else repr(value)}, not {what}")
    return value


class Shared(Protocol):
    """A copy of the record that every machine reads: written only over the version this run last saw."""

    @property
    def where(self) -> str: ...

    def read(self) -> tuple[bytes, str] | None:
        """The record's JSON and its version tag; None when there is none."""

    def write(self, body: bytes, replacing: str | None) -> str | None:
        """The new version tag; None when the copy cannot be made yet; RecordChanged when `replacing` is stale."""


@dataclass(frozen=True)
class Unfinished:
    """A run that did not finish: where the next run of the same command picks up."""

    run: str
    status: str  # "failed" or "interrupted"
    stage: str  # the first stage it did not complete
    error: str
    stages: Mapping[str, Mapping[str, Any]]
    where: str = ""  # the record it was read from, for messages

    def done(self, stage: str, fingerprint: str, kind: type[C]) -> C | None:
        """What the run recorded for `stage`, as `kind`, if it completed it from the same inputs."""
        found = self.stages.get(stage)
        if found is None or found.get("inputs") != fingerprint:
            return None
        try:
            return kind.from_json(found)
        except Malformed as e:
            raise JournalInvalid(f"run record {self.where}: stage {stage}: {e}; {_FIX}") from None

    def completed(self, stage: str, fingerprint: str) -> bool:
        found = self.stages.get(stage)
        return found is not None and found.get("inputs") == fingerprint

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
    previous_from: str = ""
    _shared: Shared | None = None
    _version: str | None = None  # of the shared copy, as this run last read or wrote it

    def share(self, copy: Shared) -> None:
        """Keep the record in `copy` from now on, and take the run it holds as the previous one when later.

        The copy is claimed at once: of two runs that read the same version, only the first to write
        goes on. A copy still "running" is taken as interrupted: this machine's lock says its own
        runs are dead, and a run alive elsewhere stops at its next checkpoint, as it finds it taken.
        """
        found = copy.read()
        if found is not None:
            body, self._version = found
            theirs = _parsed(body, copy.where)
            if theirs.get("status") == "running":
                theirs["status"] = INTERRUPTED
            # Run ids begin with their start time: the later record is the cluster's last run.
            if self.previous is None or str(theirs["run"]) >= str(self.previous["run"]):
                self.previous, self.previous_from = theirs, copy.where
        self._shared = copy
        self._save()

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
        return Unfinished(
            str(before["run"]), str(status), stage, str(before.get("error", "")), stages, self.previous_from
        )

    def stage(self, name: str, fingerprint: str, checkpoint: Checkpoint) -> None:
        self.record.setdefault("stages", {})[name] = {"inputs": fingerprint, **checkpoint.to_json()}
        self._save()

    def finish(self, status: str, **details: Any) -> None:
        self.record.update(status=status, finished=_now(), **details)
        self._save()

    def _end_on_error(self, status: str, error: str) -> None:
        """Finish as the run ends on an error: the shared copy failing too must not hide the error that ended it."""
        self.record.update(status=status, finished=_now(), error=error)
        try:
            self._save()
        except PipelineError:
            self._shared = None

    def _save(self) -> None:
        body = json.dumps(self.record, indent=2, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(body)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        if self._shared is None:
            return
        try:
            written = self._shared.write(body.encode(), self._version)
        except RecordChanged:
            # It is another run's now: this one leaves it as that run wrote it.
            shared, self._shared = self._shared, None
            raise RunInProgress(
                f"cluster '{self.record['cluster']}' was taken over by {_writer(shared)}, which wrote "
                f"{shared.where} since this run did; this run stops here: wait for that one to finish"
            ) from None
        # None: no copy yet (the state bucket is made by the network stage); the next checkpoint writes it whole.
        self._version = self._version if written is None else written


def _writer(copy: Shared) -> str:
    """Who holds the shared copy now, as far as it tells."""
    try:
        found = copy.read()
        record = None if found is None else _parsed(found[0], copy.where)
    except PipelineError:
        record = None
    if record is None:
        return "another run"
    return f"run {record['run']}" + (f" on {record['host']}" if isinstance(record.get("host"), str) else "")


def last_run(journal_dir: Path, cluster: str) -> dict[str, Any] | None:
    """The cluster's last run on this machine; one left "running" by a dead process reads as interrupted."""
    data = _read(journal_dir / f"{cluster}.json")
    if data is not None and data.get("status") == "running" and not _held(journal_dir / f"{cluster}.lock"):
        data["status"] = INTERRUPTED
    return data


def last_run_anywhere(journal_dir: Path, cluster: str, copy: Shared) -> dict[str, Any] | None:
    """The cluster's last run on any machine: the shared copy's, or this machine's when it is later.

    A shared record still "running" stays so: from here, a run alive on another machine cannot be
    told from a dead one. When it is this machine's own run, this machine's lock tells.
    """
    mine = last_run(journal_dir, cluster)
    found = copy.read()
    if found is None:
        return mine
    theirs = _parsed(found[0], copy.where)
    return mine if mine is not None and str(mine["run"]) >= str(theirs["run"]) else theirs


def _read(path: Path) -> dict[str, Any] | None:
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        return None
    return _parsed(body, str(path))


def _parsed(body: bytes, where: str) -> dict[str, Any]:
    """A run record as written by `Journal`, else JournalInvalid naming what is wrong in one line."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise JournalInvalid(f"run record {where} is not JSON ({e}); {_FIX}") from None
    if not isinstance(data, dict):
        raise JournalInvalid(f"run record {where} is not a JSON object; {_FIX}")
    try:
        for key in ("run", "command", "status"):
            text(data, key)
        stages = data.get("stages", {})
        if not isinstance(stages, dict):
            raise Malformed(f"'stages' is {stages!r}, not an object")
        for name, entry in stages.items():
            if not isinstance(entry, dict):
                raise Malformed(f"stage {name} is {entry!r}, not an object")
            text(entry, "inputs")
    except Malformed as e:
        raise JournalInvalid(f"run record {where}: {e}; {_FIX}") from None
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
    run_id = new_run_id()
    with _holding(journal_dir, cluster, run_id, refused=""):
        path = journal_dir / f"{cluster}.json"
        previous = _read(path)
        if previous is not None and previous.get("status") == "running":
            # This process holds the lock now, so the run that wrote "running" is dead.
            previous["status"] = INTERRUPTED
        journal = Journal(
            path,
            {
                "run": run_id,
                "cluster": cluster,
                "command": command,
                "host": socket.gethostname(),
                "started": _now(),
                "status": "running",
            },
            previous,
            str(path),
        )
        journal._save()
        try:
            yield journal
        except (KeyboardInterrupt, Interrupted):
            journal._end_on_error(INTERRUPTED, "interrupted")
            raise
        except BaseException as exc:
            journal._end_on_error("failed", str(exc) or type(exc).__name__)
            raise


@contextlib.contextmanager
def hold(journal_dir: Path, cluster: str, doing: str) -> Iterator[None]:
    """Hold the cluster as a run does, journaling nothing: for work between runs that must not overlap one.

    Refused while a run of this machine holds it; the previous run's record stays the previous one.
    """
    with _holding(journal_dir, cluster, doing, refused=f"{doing} refused: "):
        yield


@contextlib.contextmanager
def _holding(journal_dir: Path, cluster: str, holder: str, *, refused: str) -> Iterator[None]:
    """The cluster's lock on this machine, held under `holder`'s name; RunInProgress (opening with `refused`)
    while another process holds it."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    with (journal_dir / f"{cluster}.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            other = lock.read().strip() or "another run"
            raise RunInProgress(
                f"{refused}cluster '{cluster}' is held by run {other} on this machine; wait for it to finish"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{holder} (pid {os.getpid()})\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
