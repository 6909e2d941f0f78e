"""Terraform's S3 state lock (`use_lockfile`): who holds it, when it counts as stale, and releasing it.

Terraform keeps the lock as a JSON object beside the state, KEY.tflock. `terraform force-unlock`
asks "yes" at a terminal and fails without one; here the lock object is read and deleted
directly, as force-unlock does, but only while it is the very object read (its ETag): a lock
another run takes meanwhile is left alone.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline import aws
from pipeline.config import STALE_LOCK_AFTER, STALE_LOCK_TEXT
from pipeline.errors import AwsError, StateLocked
from pipeline.model import AwsAccess, Target

_LOCK_INFO = re.compile(r"^\s*(ID|Operation|Who|Created):[ \t]*(.*?)\s*$", re.MULTILINE)
# Go's time.Time as the lock error prints it: 2026-12-03 06:50:01.123456789 +0000 UTC
_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? ([+-]\d{4})")


@dataclass(frozen=True)
class Lock:
    """What Terraform recorded of a lock's holder."""

    id: str
    who: str
    operation: str
    created: datetime | None  # None when the lock does not say in a form Terraform writes

    def stale(self, now: datetime) -> bool:
        """Old enough that its run is taken for dead; a lock of unknown age never is."""
        return self.created is not None and now - self.created >= STALE_LOCK_AFTER

    def describe(self, now: datetime) -> str:
        holder = f" by {self.who}" if self.who else ""
        operation = f" for {self.operation.removeprefix('OperationType').lower()}" if self.operation else ""
        return f"lock {self.id}, taken{holder}{operation} {_age(self, now)}"


@dataclass(frozen=True)
class Scope:
    """Whose state a lock guards, in the words `unlock` takes: a cluster, or the account's stack (cluster None)."""

    cluster: str | None
    target: Target
    region: str | None = None  # the cluster's; None: the one its last run on this machine recorded

    @property
    def subject(self) -> str:
        return "the account's node IAM stack" if self.cluster is None else f"cluster '{self.cluster}'"

    def command(self, lock: Lock, now: datetime) -> str:
        """The `unlock` that releases exactly `lock`; --force when it is too young to be released without."""
        words = ["python", "-m", "pipeline", "unlock", "--account" if self.cluster is None else self.cluster]
        if self.target != "local":
            words += ["--target", self.target]
        if self.cluster is not None and self.region is not None:
            words += ["--region", self.region]
        words += ["--lock", lock.id]
        if not lock.stale(now):
            words.append("--force")
        return shlex.join(words)


def held_message(lock: Lock, scope: Scope | None, now: datetime | None = None) -> str:
    """A lock error's words after the Terraform command: the lock, and the command that releases it."""
    now = now or datetime.now(UTC)
    if scope is None:
        return f"the Terraform state is locked ({lock.describe(now)})"
    locked = f"the Terraform state of {scope.subject} is locked ({lock.describe(now)})"
    if lock.stale(now):
        return f"{locked}; if no run is in progress, release it with: {scope.command(lock, now)}"
    return f"{locked}; if the run that took it is dead, release it with: {scope.command(lock, now)}"


def from_output(output: str) -> Lock | None:
    """The lock a Terraform error names ("Error acquiring the state lock" and its Lock Info), if any."""
    if "Error acquiring the state lock" not in output:
        return None
    fields = dict(_LOCK_INFO.findall(output.split("Lock Info:", 1)[-1]))
    if not fields.get("ID"):
        return None
    created = _GO_TIME.search(fields.get("Created", ""))
    when = None
    if created is not None:
        stamp, fraction, zone = created.groups()
        # Go prints up to nine fractional digits; Python reads six.
        when = datetime.strptime(f"{stamp}{(fraction or '.0')[:7]} {zone}", "%Y-%m-%d %H:%M:%S.%f %z")
    return Lock(fields["ID"], fields.get("Who", ""), fields.get("Operation", ""), when)


def from_object(body: bytes, where: str) -> Lock:
    """The lock as Terraform writes its lock file: JSON with ID, Who, Operation and Created (RFC 3339)."""
    try:
        raw = json.loads(body)
        lock_id = raw["ID"]
    except (ValueError, TypeError, KeyError):
        raise AwsError(f"{where} is not a Terraform lock file (no ID); check PIPELINE_STATE_BUCKET") from None
    try:
        created: datetime | None = datetime.fromisoformat(str(raw.get("Created")))
    except ValueError:
        created = None
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)  # Terraform writes UTC; a zone left out means the same
    return Lock(str(lock_id), str(raw.get("Who") or ""), str(raw.get("Operation") or ""), created)


def lock_file(state_key: str) -> str:
    """The key of the lock Terraform's use_lockfile keeps beside the state at `state_key`."""
    return f"{state_key}.tflock"


def release(
    access: AwsAccess,
    bucket: str,
    key: str,
    scope: Scope,
    *,
    lock_id: str | None,
    force: bool,
    now: datetime | None = None,
) -> Lock | None:
    """Delete the lock at s3://bucket/key, as `force-unlock` would; None when there is none.

    Refused (StateLocked, nothing deleted) when it is not the lock `lock_id` names, or when it is
    younger than STALE_LOCK_AFTER and not `force`d.
    """
    now = now or datetime.now(UTC)
    where = f"s3://{bucket}/{key}"
    found = aws.read_object(access, bucket, key)
    if found is None:
        return None
    body, etag = found
    lock = from_object(body, where)
    if lock_id is not None and lock.id != lock_id:
        raise StateLocked(
            f"{scope.subject}: the Terraform state is locked by another lock than {lock_id} ({lock.describe(now)}); "
            f"nothing released: if its run is dead too, release it with: {scope.command(lock, now)}"
        )
    if not force and not lock.stale(now):
        raise StateLocked(
            f"{scope.subject}: {lock.describe(now)}, younger than {STALE_LOCK_TEXT}: its run may still be "
            "alive on another machine; nothing released: wait for it, or pass --force if that run is dead"
        )
    if not aws.delete_object_if(access, bucket, key, etag):
        raise StateLocked(
            f"{scope.subject}: the lock changed while it was being released ({where}); nothing released: "
            "another run took it meanwhile, run unlock again to see it"
        )
    return lock


def _age(lock: Lock, now: datetime) -> str:
    if lock.created is None:
        return "at a time it does not record"
    seconds = int((now - lock.created).total_seconds())
    if seconds < 0:
        return f"at {lock.created.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, ahead of this machine's clock"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"
