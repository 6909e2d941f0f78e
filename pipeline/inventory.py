"""The fleet at a glance: each cluster's commit and signature, review branch, state serial, last run and health.

Everything is read, nothing written: one clone of the fleet for the whole listing, the state
serial straight from the state object in S3 (no Terraform run), the last run from the journal,
the health from the commit statuses Flux posted on main's head (one forge call for the fleet).
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline import aws, fleet, git, health, journal, network, shared_journal
from pipeline.commit import review_branch
from pipeline.config import Settings
from pipeline.errors import AwsError, BadInput, PipelineError
from pipeline.fleet import VPC_CIDR_ANNOTATION
from pipeline.model import AwsAccess
from pipeline.signing import trusted_signers

REGION_ANNOTATION = "fleet.pipeline/region"
UNSIGNED = "unsigned"
UNTRUSTED = "untrusted"  # signed, but not by a key main trusts (or the signature does not hold)
_NOT_RUNNING = "no AWS endpoint is running to ask; for the local target, `python -m pipeline local up` starts one"

# How to reach AWS in a region; None when no endpoint is running, and none is started just to look.
# A PipelineError it raises becomes the reason the region's serials are unknown.
AccessFor = Callable[[str], AwsAccess | None]
# Where a region's state bucket is (access and bucket name), or why that cannot be known.
_Location = tuple[AwsAccess, str] | str
# State objects read at once: S3 answers each in a round trip, and one client serves them all.
_READERS = 8


@dataclass(frozen=True)
class LastRun:
    run: str
    command: str
    status: str  # running, succeeded or failed
    finished: str | None  # None while running, or when the run was killed
    error: str | None


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    region: str | None  # None: the Cluster object lacks the fleet.pipeline/region annotation
    vpc_cidr: str | None
    commit: str | None  # the last commit on main touching clusters/NAME/; None: only under review
    signature: str | None  # that commit's trusted signer's fingerprint, UNSIGNED or UNTRUSTED
    review_branch: str | None  # cluster/NAME while its head is not part of main
    review_head: str | None
    state_serial: int | None  # None: no state yet, or unknown when state_unknown says why
    state_unknown: str | None
    last_run: LastRun | None
    health: health.State  # as Flux reported it on main's head: ready, not-ready, reconciling or unknown
    health_detail: str  # what Flux said, or why the health is unknown


@dataclass(frozen=True)
class _Entry:
    """A cluster as the fleet repository holds it."""

    annotations: Mapping[str, str]  # of its Cluster object, as on main, else as on its review branch
    commit: str | None
    review_head: str | None


def fleet_status(settings: Settings, access_for: AccessFor) -> tuple[ClusterStatus, ...]:
    """Every cluster on main or only under review, by name; none when there is no fleet yet."""
    with fleet.reading(settings) as checkout:
        if checkout is None:
            return ()
        entries = _entries(checkout)
        signatures = _signatures(checkout, [e.commit for e in entries.values() if e.commit is not None])
        reported = health.read(settings, git.head_of(checkout, fleet.MAIN), entries)
    serials = _serials(
        settings, access_for, {name: e.annotations.get(REGION_ANNOTATION) for name, e in entries.items()}
    )
    return tuple(
        _status(settings, name, entry, signatures, serials[name], reported=reported[name])
        for name, entry in entries.items()
    )


def cluster_status(settings: Settings, name: str, access_for: AccessFor) -> ClusterStatus:
    """One cluster's status; BadInput naming the known clusters when it is not in the fleet."""
    if not fleet.exists(settings):
        raise BadInput(f"no fleet at {settings.fleet} yet, so no cluster '{name}'; new-cluster creates both")
    with fleet.session(settings) as checkout:
        entries = _entries(checkout)
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise BadInput(f"cluster '{name}' is not in the fleet {settings.fleet} (known: {known}); check the name")
        entry = entries[name]
        reported = health.read(settings, git.head_of(checkout, fleet.MAIN), [name])[name]
        signatures = _signatures(checkout, [] if entry.commit is None else [entry.commit])
    region = entry.annotations.get(REGION_ANNOTATION)
    serials = _serials(settings, access_for, {name: region})
    found = _status(settings, name, entry, signatures, serials[name], reported=reported)
    # One cluster: its record beside its state is one read, and tells runs of other machines (CI) too.
    return replace(found, last_run=_last_run_anywhere(settings, access_for, name, region) or found.last_run)


def to_data(status: ClusterStatus | tuple[ClusterStatus, ...]) -> dict[str, Any]:
    """One cluster as an object, a listing as {"clusters": [...]}: what --json prints."""
    return asdict(status) if isinstance(status, ClusterStatus) else {"clusters": [asdict(s) for s in status]}


def _status(
    settings: Settings,
    name: str,
    entry: _Entry,
    signatures: Mapping[str, str],
    serial: tuple[int | None, str | None],
    *,
    reported: health.Health,
) -> ClusterStatus:
    annotations = entry.annotations
    return ClusterStatus(
        name=name,
        region=annotations.get(REGION_ANNOTATION),
        vpc_cidr=annotations.get(VPC_CIDR_ANNOTATION),
        commit=entry.commit,
        signature=None if entry.commit is None else signatures[entry.commit],
        review_branch=None if entry.review_head is None else review_branch(name),
        review_head=entry.review_head,
        state_serial=serial[0],
        state_unknown=serial[1],
        # A listing reads this machine's records: the bucket's would be a read per cluster of the fleet.
        last_run=_last_run(journal.last_run(settings.journal_dir, name)),
        health=reported.state,
        health_detail=reported.detail,
    )


def _entries(checkout: git.Checkout) -> dict[str, _Entry]:
    """The clusters on main and those only on an open review branch, by name.

    What a listing shows of a cluster is in its Cluster object's file; the rest of its files are not read.
    """
    main_head = git.head_of(checkout, fleet.MAIN)
    on_main = {} if main_head is None else git.read_each(checkout, main_head, fleet.CLUSTERS_DIR, fleet.CLUSTER_FILE)
    last = {} if main_head is None else git.last_commits_under(checkout, main_head, fleet.CLUSTERS_DIR)
    open_reviews = {
        name: head
        for name, head in git.remote_heads(checkout, review_branch("")).items()
        if main_head is None or not git.is_ancestor(checkout, head, main_head)
    }
    entries: dict[str, _Entry] = {}
    for name in sorted(on_main.keys() | open_reviews.keys()):
        head = open_reviews.get(name)
        if name in on_main:
            entries[name] = _Entry(fleet.cluster_annotations(on_main[name]), last.get(name), head)
        elif head is not None:
            folder, _ = fleet.owned_paths(name)
            # A branch named like a review that holds no such cluster is not a cluster.
            if git.list_files(checkout, head, folder):
                recorded = git.read_file(checkout, head, f"{folder}{fleet.CLUSTER_FILE}")
                entries[name] = _Entry(fleet.cluster_annotations(recorded), None, head)
    return entries


def _signatures(checkout: git.Checkout, commits: Sequence[str]) -> dict[str, str]:
    """Who signed each commit, judged against main's trusted keys, in one pass."""
    main_head = git.head_of(checkout, fleet.MAIN)
    trusted = () if main_head is None else fleet.keys_at(checkout, main_head)
    signers = trusted_signers(checkout.path, sorted(set(commits)), trusted)
    return {rev: UNSIGNED if signer == "" else signer or UNTRUSTED for rev, signer in signers.items()}


def _serials(
    settings: Settings, access_for: AccessFor, regions: Mapping[str, str | None]
) -> dict[str, tuple[int | None, str | None]]:
    """Each cluster's state serial, or None and why it is unknown.

    Each region's bucket is found once and listed once; only the states it holds are read, in parallel.
    """
    found: dict[str, tuple[int | None, str | None]] = {}
    by_region: dict[str, list[str]] = {}
    for name, region in regions.items():
        if region is None:
            found[name] = (None, f"no '{REGION_ANNOTATION}' annotation")
        else:
            by_region.setdefault(region, []).append(name)
    for region, names in sorted(by_region.items()):
        location = _locate(settings, access_for, region)
        if isinstance(location, str):
            found.update({name: (None, location) for name in names})
            continue
        access, bucket = location
        try:
            held = aws.state_keys(access, bucket)
        except PipelineError as failed:
            found.update({name: (None, str(failed)) for name in names})
            continue
        present = [name for name in names if network.state_key(name) in held]
        found.update({name: (None, None) for name in names if name not in present})
        with concurrent.futures.ThreadPoolExecutor(max_workers=_READERS) as pool:
            read = pool.map(_serial, present, itertools.repeat(access), itertools.repeat(bucket))
            found.update(zip(present, read, strict=True))
    return found


def _locate(settings: Settings, access_for: AccessFor, region: str) -> _Location:
    """The region's state bucket: an unreachable endpoint costs one timeout, not one per cluster."""
    try:
        access = access_for(region)
        if access is None:
            return _NOT_RUNNING
        return access, network.state_bucket(settings, aws.caller_identity(access), region)
    except PipelineError as failed:
        return str(failed)


def _serial(name: str, access: AwsAccess, bucket: str) -> tuple[int | None, str | None]:
    try:
        return aws.state_serial(access, bucket, network.state_key(name)), None
    except PipelineError as failed:
        return None, str(failed)


def _last_run_anywhere(settings: Settings, access_for: AccessFor, name: str, region: str | None) -> LastRun | None:
    """The cluster's last run on any machine, from the state bucket; None when the bucket cannot be read."""
    location = None if region is None else _locate(settings, access_for, region)
    if location is None or isinstance(location, str):
        return None
    access, bucket = location
    try:
        record = journal.last_run_anywhere(
            settings.journal_dir, name, shared_journal.BucketCopy(access, bucket, network.journal_key(name))
        )
    except AwsError:
        return None
    return _last_run(record)


def _last_run(record: dict[str, Any] | None) -> LastRun | None:
    if record is None:
        return None

    def optional(key: str) -> str | None:
        value = record.get(key)
        return None if value is None else str(value)

    return LastRun(
        run=str(record.get("run", "?")),
        command=str(record.get("command", "?")),
        status=str(record.get("status", "?")),
        finished=optional("finished"),
        error=optional("error"),
    )
