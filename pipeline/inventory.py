"""The fleet at a glance: each cluster's commit and signature, review branch, state serial, last run and health.

Everything is read, nothing written: one clone of the fleet for the whole listing, the state
serial straight from the state object in S3 (no Terraform run), the last run from the journal,
the health from the commit statuses Flux posted on main's head (one forge call for the fleet).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import aws, fleet, git, health, journal, network
from pipeline.commit import review_branch
from pipeline.config import Settings
from pipeline.errors import BadInput, PipelineError, SigningError
from pipeline.model import AwsAccess, Manifests
from pipeline.signing import verify_commit
from pipeline.validate import VPC_CIDR_ANNOTATION

REGION_ANNOTATION = "fleet.pipeline/region"
UNSIGNED = "unsigned"
UNTRUSTED = "untrusted"  # signed, but not by a key main trusts (or the signature does not hold)
_CLUSTER_API = "cluster.x-k8s.io/"
_NOT_RUNNING = "no AWS endpoint is running to ask; for the local target, `python -m pipeline local up` starts one"

# How to reach AWS in a region; None when no endpoint is running, and none is started just to look.
# A PipelineError it raises becomes the reason the region's serials are unknown.
AccessFor = Callable[[str], AwsAccess | None]
# Where a region's state bucket is (access and bucket name), or why that cannot be known.
_Location = tuple[AwsAccess, str] | str


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

    manifests: Manifests  # as on main, else as on its review branch
    commit: str | None
    review_head: str | None


def fleet_status(settings: Settings, access_for: AccessFor) -> tuple[ClusterStatus, ...]:
    """Every cluster on main or only under review, by name; none when there is no fleet yet."""
    if not fleet.exists(settings):
        return ()
    locate = _locator(settings, access_for)
    with git.clone(settings.fleet) as checkout:
        entries = _entries(checkout)
        signatures = _signatures(checkout)
        reported = health.read(settings, git.head_of(checkout, fleet.MAIN), entries)
        return tuple(
            _status(settings, name, entry, signatures, locate, reported=reported[name])
            for name, entry in entries.items()
        )


def cluster_status(settings: Settings, name: str, access_for: AccessFor) -> ClusterStatus:
    """One cluster's status; BadInput naming the known clusters when it is not in the fleet."""
    if not fleet.exists(settings):
        raise BadInput(f"no fleet at {settings.fleet} yet, so no cluster '{name}'; new-cluster creates both")
    with git.clone(settings.fleet) as checkout:
        entries = _entries(checkout)
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise BadInput(f"cluster '{name}' is not in the fleet {settings.fleet} (known: {known}); check the name")
        reported = health.read(settings, git.head_of(checkout, fleet.MAIN), [name])[name]
        return _status(
            settings, name, entries[name], _signatures(checkout), _locator(settings, access_for), reported=reported
        )


def to_json(status: ClusterStatus | tuple[ClusterStatus, ...]) -> str:
    """One cluster as an object, a listing as {"clusters": [...]}; sorted keys, so equal input gives equal text."""
    data: Any = asdict(status) if isinstance(status, ClusterStatus) else {"clusters": [asdict(s) for s in status]}
    return json.dumps(data, indent=2, sort_keys=True)


def _status(
    settings: Settings,
    name: str,
    entry: _Entry,
    signature_of: Callable[[str], str],
    locate: Callable[[str], _Location],
    *,
    reported: health.Health,
) -> ClusterStatus:
    annotations = _annotations(entry.manifests)
    region = annotations.get(REGION_ANNOTATION)
    serial, unknown = _serial(name, locate(region)) if region else (None, f"no '{REGION_ANNOTATION}' annotation")
    return ClusterStatus(
        name=name,
        region=region,
        vpc_cidr=annotations.get(VPC_CIDR_ANNOTATION),
        commit=entry.commit,
        signature=None if entry.commit is None else signature_of(entry.commit),
        review_branch=None if entry.review_head is None else review_branch(name),
        review_head=entry.review_head,
        state_serial=serial,
        state_unknown=unknown,
        last_run=_last_run(settings.journal_dir, name),
        health=reported.state,
        health_detail=reported.detail,
    )


def _entries(checkout: git.Checkout) -> dict[str, _Entry]:
    """The clusters on main and those only on an open review branch, by name."""
    main_head = git.head_of(checkout, fleet.MAIN)
    on_main = {} if main_head is None else {m.cluster: m for m in fleet.clusters_at(checkout, main_head)}
    open_reviews = {
        name: head
        for name, head in git.remote_heads(checkout, review_branch("")).items()
        if main_head is None or not git.is_ancestor(checkout, head, main_head)
    }
    entries: dict[str, _Entry] = {}
    for name in sorted(on_main.keys() | open_reviews.keys()):
        head = open_reviews.get(name)
        if name in on_main and main_head is not None:
            entries[name] = _Entry(
                on_main[name], git.last_commit_touching(checkout, main_head, fleet.owned_paths(name)[0]), head
            )
        elif head is not None:
            branch_copy = [m for m in fleet.clusters_at(checkout, head) if m.cluster == name]
            # A branch named like a review that holds no such cluster is not a cluster.
            if branch_copy:
                entries[name] = _Entry(branch_copy[0], None, head)
    return entries


def _signatures(checkout: git.Checkout) -> Callable[[str], str]:
    """Who signed a commit, judged against main's trusted keys; each commit checked once."""
    main_head = git.head_of(checkout, fleet.MAIN)
    trusted = () if main_head is None else fleet.keys_at(checkout, main_head)

    @functools.cache
    def signature_of(rev: str) -> str:
        if not git.has_signature(checkout, rev):
            return UNSIGNED
        try:
            return verify_commit(checkout.path, rev, trusted)
        except SigningError:
            return UNTRUSTED

    return signature_of


def _locator(settings: Settings, access_for: AccessFor) -> Callable[[str], _Location]:
    """Each region's state bucket, asked once: an unreachable endpoint costs one timeout, not one per cluster."""

    @functools.cache
    def locate(region: str) -> _Location:
        try:
            access = access_for(region)
            if access is None:
                return _NOT_RUNNING
            return access, network.state_bucket(settings, aws.caller_identity(access), region)
        except PipelineError as failed:
            return str(failed)

    return locate


def _serial(name: str, location: _Location) -> tuple[int | None, str | None]:
    """The state serial, or None and why it is unknown."""
    if isinstance(location, str):
        return None, location
    access, bucket = location
    try:
        return aws.state_serial(access, bucket, network.state_key(name)), None
    except PipelineError as failed:
        return None, str(failed)


def _annotations(manifests: Manifests) -> Mapping[str, str]:
    """The annotations of the cluster's Cluster API Cluster object; none when it has none."""
    for manifest in manifests.files:
        try:
            docs = list(yaml.safe_load_all(manifest.content))
        except yaml.YAMLError:
            continue  # validation reports broken files; a listing shows what it can
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "Cluster":
                continue
            if not str(doc.get("apiVersion", "")).startswith(_CLUSTER_API):
                continue
            metadata = doc.get("metadata")
            annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
            return {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}
    return {}


def _last_run(journal_dir: Path, name: str) -> LastRun | None:
    record = journal.last_run(journal_dir, name)
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
