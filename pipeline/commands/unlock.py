"""`unlock NAME` (or `--account`): release a dead run's Terraform state lock, asking nothing.

A killed run leaves its lock held, and every run after it fails naming this command. It holds the
cluster on this machine as a run does, so it is refused while one is alive here; a lock younger
than config.STALE_LOCK_AFTER may be a run alive elsewhere. Either is released only with --force:
for a run that is stuck, not dead, whose Terraform may then fail to save its state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

from pipeline import access, aws, journal, network, node_iam, spec, state_lock
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, BadInput, RunInProgress
from pipeline.model import AwsAccess
from pipeline.report import Outcome, Reporter, markdown_list


def run(
    name: str | None,
    settings: Settings,
    reporter: Reporter,
    *,
    region: str | None,
    lock_id: str | None,
    force: bool,
) -> int:
    scope, aws_access, bucket, key = _lock_of(name, region, settings)
    where = f"s3://{bucket}/{key}"
    with _holding(scope, settings, reporter, force=force), reporter.stage("unlock"):
        now = datetime.now(UTC)
        released = state_lock.release(aws_access, bucket, key, scope, lock_id=lock_id, force=force, now=now)
        reporter.info(f"released {released.describe(now)}" if released else f"no lock at {where}")
    reporter.finish(_finished(scope, where, released, now))
    return EXIT_OK


def _lock_of(name: str | None, region: str | None, settings: Settings) -> tuple[state_lock.Scope, AwsAccess, str, str]:
    """Whose lock, and its account, bucket and key, found as the runs that take it find them."""
    if name is None:
        if region is not None:
            raise BadInput("--region names a cluster's region; the account's stack is in PIPELINE_ACCOUNT_REGION")
        aws_access = access.for_target(settings, settings.account_region)
        bucket = node_iam.state_bucket(settings, aws_access)
        return state_lock.Scope(None, settings.target), aws_access, bucket, state_lock.lock_file(node_iam.STATE_KEY)
    spec.check_name(name)
    found = region or network.recorded_region(settings, name)
    if found is None:
        raise BadInput(
            f"cluster '{name}' has no Terraform run on this machine to take its region from; "
            "pass --region, as the lock error printed it"
        )
    aws_access = access.for_target(settings, found)
    bucket = network.state_bucket(settings, aws.caller_identity(aws_access), found)
    return state_lock.Scope(name, settings.target, found), aws_access, bucket, network.lock_key(name)


@contextmanager
def _holding(scope: state_lock.Scope, settings: Settings, reporter: Reporter, *, force: bool) -> Iterator[None]:
    """What a run of this machine holds while its Terraform may hold the lock; refused while one does,
    unless forced."""
    with ExitStack() as held:
        try:
            if scope.cluster is None:
                held.enter_context(node_iam.holding(settings))
            else:
                held.enter_context(journal.hold(settings.journal_dir, scope.cluster, "unlock"))
        except RunInProgress as alive:
            if not force:
                raise RunInProgress(f"{alive}, or pass --force if it is stuck") from None
            reporter.info(f"{alive}; releasing its lock anyway (--force): its Terraform may fail to save its state")
        yield


def _finished(scope: state_lock.Scope, where: str, released: state_lock.Lock | None, now: datetime) -> Outcome:
    if released is None:
        lines = [f"{scope.subject}: no Terraform state lock at {where}; nothing to release"]
    else:
        lines = [f"{scope.subject}: released {released.describe(now)} at {where}", "next: run again what it blocked"]
    data = {
        "cluster": scope.cluster,
        "account": scope.cluster is None,
        "lock_file": where,
        "released": None
        if released is None
        else {
            "id": released.id,
            "who": released.who,
            "operation": released.operation,
            "created": None if released.created is None else released.created.isoformat(),
        },
    }
    return Outcome(tuple(lines), data, summary=markdown_list("Terraform state lock", lines))
