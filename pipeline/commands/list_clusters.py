"""`list`: every cluster in the fleet, with its commit, signature, review branch, state serial, health and last run."""

from __future__ import annotations

import functools

from pipeline import fleet, inventory, local_endpoint
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.inventory import AccessFor, ClusterStatus
from pipeline.model import AwsAccess

_COLUMNS = ("NAME", "REGION", "CIDR", "COMMIT", "SIGNATURE", "REVIEW", "SERIAL", "HEALTH", "LAST RUN")


def run(as_json: bool, settings: Settings) -> int:
    clusters = inventory.fleet_status(settings, reachable_access(settings))
    if as_json:
        print(inventory.to_json(clusters))
    elif not fleet.exists(settings):
        print(f"no fleet at {settings.fleet} yet; new-cluster creates it with the first cluster")
    elif not clusters:
        print(f"no clusters in the fleet {settings.fleet}")
    else:
        _print_table([_row(c) for c in clusters])
        for reason in sorted({c.state_unknown for c in clusters if c.state_unknown is not None}):
            print(f"state serial unknown: {reason}")
        for reason in sorted({c.health_detail for c in clusters if c.health == "unknown"}):
            print(f"health unknown: {reason}")
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


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *rows, strict=True)]
    for row in (_COLUMNS, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
