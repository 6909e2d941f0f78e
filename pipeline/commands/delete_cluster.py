"""`delete-cluster NAME`: the signed removal of a cluster's manifests, then its network.

The first run puts the removal up for review on cluster/NAME. Once it is on main, Flux
prunes the cluster's objects and the next run destroys the network, removes its Terraform
state and deletes the review branch.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from pipeline import commit, delete, journal, pr_body, review, signing, spec
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.model import fingerprint
from pipeline.report import Outcome, Reporter, markdown_list


def run(name: str, review_mode: str, force: bool, settings: Settings, reporter: Reporter) -> int:
    spec.check_name(name)
    if review_mode == "github":
        review.check(settings)
    with journal.run(settings.journal_dir, name, "delete-cluster") as record:
        with reporter.stage("locate"):
            standing = delete.locate(name, settings)
            reporter.info(_situation(standing))
        record.stage("locate", fingerprint(asdict(standing)), delete.LocateCheckpoint(bool(standing.on_main)))

        removal = None
        if standing.on_main:
            with reporter.stage("remove"):
                run_id = str(record.record["run"])
                signer = signing.signer_for(settings)
                trailers = pr_body.run_trailers(run_id, pr_body.workflow_run_url(os.environ))
                removal = delete.propose_removal(standing, review_mode, settings, signer, trailers)
                _report_removal(reporter, removal)
            record.stage("remove", fingerprint(list(standing.on_main)), commit.CommitCheckpoint.of(removal.commit))
            if not force:
                record.finish("succeeded", commit=removal.commit.commit, awaiting="review of the removal")
                reporter.finish(_finished(standing, removal, None))
                return EXIT_OK

        with reporter.stage("destroy"):
            teardown = delete.tear_down(standing, settings, force, reporter.tool_line)
        record.stage("destroy", fingerprint(asdict(standing)), teardown)
        record.finish("succeeded")
    reporter.finish(_finished(standing, removal, teardown))
    return EXIT_OK


def _situation(standing: delete.Standing) -> str:
    on_main = f"{len(standing.on_main)} files on main" if standing.on_main else "not on main"
    if standing.branch_head is None:
        branch = "no review branch"
    else:
        branch = f"{standing.branch} at {standing.branch_head[:12]}{' (merged)' if standing.branch_merged else ''}"
    found = standing.network
    where = "no network recorded" if found is None else f"network in {found.region} (from {found.source})"
    return f"{on_main}; {branch}; {where}"


def _report_removal(reporter: Reporter, removal: delete.Removal) -> None:
    outcome = removal.commit
    if outcome.changed:
        reporter.info(f"signed the removal {outcome.commit} on {outcome.branch} with key {outcome.signer}; pushed")
    else:
        reporter.info(f"nothing to commit: {outcome.branch} already holds the removal")
    if removal.pull is not None:
        reporter.info(f"pull request #{removal.pull.number}: {removal.pull.url}")


def _finished(standing: delete.Standing, removal: delete.Removal | None, teardown: delete.Teardown | None) -> Outcome:
    """What this run did to the cluster (its removal, its network) and what is left to do."""
    lines = [] if teardown is None else _torn_down(standing, teardown)
    step = None
    if removal is not None:
        step = _approval_step(standing.name, removal)
        lines += _under_review(standing, removal, step)
    found = standing.network
    data = {
        "cluster": standing.name,
        "removal": None if removal is None else _removal_data(removal),
        "network": None if found is None else {"region": found.region, "vpc_id": found.vpc_id},
        "destroyed": teardown is not None and teardown.destroyed,
        "branch_deleted": teardown is not None and teardown.branch_deleted,
        "next": step,
    }
    return Outcome(tuple(lines), data, summary=markdown_list(f"Deleting cluster `{standing.name}`", lines))


def _removal_data(removal: delete.Removal) -> dict[str, object]:
    return {
        "commit": removal.commit.commit,
        "changed": removal.commit.changed,
        "branch": removal.commit.branch,
        "pull_request": None if removal.pull is None else removal.pull.url,
    }


def _approval_step(name: str, removal: delete.Removal) -> str:
    if removal.pull is not None:
        return f"a reviewer approves {removal.pull.url}, then: python -m pipeline merge {name}"
    return f"python -m pipeline approve {name}"


def _under_review(standing: delete.Standing, removal: delete.Removal, step: str) -> list[str]:
    name = standing.name
    lines = [
        f"cluster {name}: its removal is under review on {removal.commit.branch} at {removal.commit.commit}",
        f"next: {step}",
    ]
    if standing.network is not None:
        lines.append(
            f"then: python -m pipeline delete-cluster {name} destroys its network in {standing.network.region}"
        )
    return lines


def _torn_down(standing: delete.Standing, teardown: delete.Teardown) -> list[str]:
    name = standing.name
    found = standing.network
    if standing.branch_head is None and not standing.on_main and not teardown.destroyed:
        return [f"cluster {name} is already gone: not on main, no review branch, no network state"]
    lines = [f"cluster {name}: review branch {standing.branch} deleted"] if teardown.branch_deleted else []
    if found is None:
        lines.append(f"cluster {name}: no network recorded in the fleet or in this machine's state; nothing to destroy")
    elif not teardown.destroyed:
        lines.append(f"cluster {name}: no Terraform state for its network in {found.region}; nothing to destroy")
    else:
        lines.append(
            f"cluster {name}: {found.vpc_id or 'network'} in {found.region} destroyed, its Terraform state removed"
        )
    if teardown.destroyed and standing.on_main:
        lines.append(
            f"warning: cluster {name}'s manifests are still on main: Flux keeps its Cluster API objects, "
            "which now point at a missing VPC, until the removal is on main"
        )
    return lines
