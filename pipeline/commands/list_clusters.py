"""`list`: every cluster in the fleet, with its commit, signature, review branch, state serial, health and last run."""

from __future__ import annotations

import functools

from pipeline import fleet, inventory, local_endpoint
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.inventory import AccessFor, ClusterStatus
from pipeline.model import AwsAccess
from pipeline.report import Outcome, Reporter

_COLUMNS = ("NAME", "REGION", "CIDR", "COMMIT", "SIGNATURE", "REVIEW", "SERIAL", "HEALTH", "LAST RUN")


def run(settings: Settings, reporter: Reporter) -> int:
    clusters = inventory.fleet_status(settings, reachable_access(settings))
    rows = [_row(c) for c in clusters]
    if not fleet.exists(settings):
        lines = [f"no fleet at {settings.fleet} yet; new-cluster creates it with the first cluster"]
    elif not clusters:
        lines = [f"no clusters in the fleet {settings.fleet}"]
    else:
        lines = _table(rows)
        unknown = {c.state_unknown for c in clusters if c.state_unknown is not None}
        lines += [f"state serial unknown: {reason}" for reason in sorted(unknown)]
        unhealthy = {c.health_detail for c in clusters if c.health == "unknown"}
        lines += [f"health unknown: {reason}" for reason in sorted(unhealthy)]
    summary = "\n".join(["### Fleet clusters", "", *_markdown_table(rows)]) + "\n" if rows else ""
    reporter.finish(Outcome(tuple(lines), inventory.to_data(clusters), summary=summary))
    return EXIT_OK


def reachable_access(settings: Settings) -> AccessFor:
    """How to reach AWS per region for a read: the local endpoint only if it is already running."""
    if settings.target == "aws":
        return lambda region: AwsAccess(region=region, endpoint=None, env=())
    return functools.partial(_local_access, settings)


def _local_access(settings: Settings, region: str) -> AwsAccess | None:
    # Asked lazily, so even an unreadable endpoint record costs only the serials, not the listing.
    endpoint = local_endpoint.status(settings)
    return local_endpoint.access(endpoint, region) if endpoint is not None and endpoint.running else None


def signature_text(status: ClusterStatus, short: bool) -> str:
    """The trusted signer's fingerprint (its last 16 digits when short), or why there is none."""
    if status.signature is None:
        return "-"
    if status.signature in (inventory.UNSIGNED, inventory.UNTRUSTED) or not short:
        return status.signature
    return status.signature[-16:]


def serial_text(status: ClusterStatus) -> str:
    if status.state_serial is not None:
        return str(status.state_serial)
    return "none" if status.state_unknown is None else "unknown"


def _row(status: ClusterStatus) -> tuple[str, ...]:
    run = status.last_run
    return (
        status.name,
        status.region or "-",
        status.vpc_cidr or "-",
        "-" if status.commit is None else status.commit[:12],
        signature_text(status, short=True),
        "-" if status.review_head is None else f"{status.review_branch}@{status.review_head[:12]}",
        serial_text(status),
        status.health,
        "-" if run is None else f"{run.command} {run.status} {run.finished or ''}".strip(),
    )


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (_COLUMNS, *rows)
    ]


def _markdown_table(rows: list[tuple[str, ...]]) -> list[str]:
    return [f"| {' | '.join(row)} |" for row in (_COLUMNS, tuple("---" for _ in _COLUMNS), *rows)]
