"""`status NAME`: one cluster's commit, signature, review branch, state serial, health and last run, as lines."""

from __future__ import annotations

from pipeline import inventory
from pipeline.commands.list_clusters import reachable_access, serial_text, signature_text
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.inventory import ClusterStatus
from pipeline.report import Outcome, Reporter, markdown_list


def run(name: str, settings: Settings, reporter: Reporter) -> int:
    status = inventory.cluster_status(settings, name, reachable_access(settings))
    lines = tuple(f"{key}: {value}" for key, value in _fields(status))
    reporter.finish(Outcome(lines, inventory.to_data(status), summary=markdown_list(f"Cluster `{name}`", lines)))
    return EXIT_OK


def _fields(status: ClusterStatus) -> list[tuple[str, str]]:
    serial = serial_text(status)
    if status.state_unknown is not None:
        serial = f"{serial} ({status.state_unknown})"
    review = "none" if status.review_head is None else f"{status.review_branch} at {status.review_head}"
    fields = [
        ("name", status.name),
        ("region", status.region or "-"),
        ("vpc-cidr", status.vpc_cidr or "-"),
        ("commit", status.commit or "- (not on main yet)"),
        ("signature", signature_text(status, short=False)),
        ("review-branch", review),
        ("state-serial", serial),
        ("health", f"{status.health} ({status.health_detail})" if status.health_detail else status.health),
    ]
    run = status.last_run
    if run is None:
        return [*fields, ("last-run", "none")]
    return [
        *fields,
        ("last-run", run.run),
        ("last-run-command", run.command),
        ("last-run-status", run.status),
        ("last-run-finished", run.finished or "-"),
        ("last-run-error", run.error or "-"),
    ]
