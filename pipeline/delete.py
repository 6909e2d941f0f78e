"""Deleting a cluster: the signed removal of its manifests, then its network once main lacks them.

Flux prunes a cluster's Cluster API objects only when main stops holding them. A VPC
destroyed before that leaves the management cluster reconciling machines into a network
that is gone, so the network goes only once the removal is on main (or when forced), and
a review branch that could still bring the manifests back goes before the network does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import access, fleet, git, journal, network, pr_body, review, yaml_docs
from pipeline.commit import owned_at, remove, review_branch
from pipeline.config import Settings
from pipeline.errors import BadInput, Blocked, GitConflict
from pipeline.github import PullRequest
from pipeline.model import CommitResult
from pipeline.signing import Signer

REGION_ANNOTATION = "fleet.pipeline/region"
# A cluster name becomes paths (fleet, journal, Terraform work dir): a DNS label, as the spec requires.


@dataclass(frozen=True)
class Network:
    """A cluster's network as the last record of it says."""

    region: str
    vpc_id: str | None  # None: the record names no VPC (the local Terraform variables)
    source: str  # where it was read, for messages: "fleet commit 1a2b3c4d5e6f"


@dataclass(frozen=True)
class Standing:
    """Where one cluster stands in the fleet, read in one clone."""

    name: str
    on_main: tuple[str, ...]  # its files on main, sorted: while any remain, Flux keeps its objects
    branch_head: str | None  # cluster/<name>'s head; None when there is no such branch
    branch_merged: bool  # the branch's head is part of main
    network: Network | None  # None: neither the fleet nor this machine ever recorded one

    @property
    def branch(self) -> str:
        return review_branch(self.name)


@dataclass(frozen=True)
class LocateCheckpoint(journal.Flat):
    """What the locate stage leaves in the run journal: whether the cluster's files were on main."""

    on_main: bool


@dataclass(frozen=True)
class Removal:
    commit: CommitResult
    pull: PullRequest | None  # the review on GitHub; None for a local review


@dataclass(frozen=True)
class Teardown(journal.Flat):
    """What the destroy stage did; also its checkpoint in the run journal."""

    branch_deleted: bool
    destroyed: bool  # False: there was no network to destroy (no record, or no Terraform state)


def locate(name: str, settings: Settings) -> Standing:
    """The cluster's files on main, its review branch, and its network's last record."""
    with git.clone(settings.fleet) as checkout:
        main_head = git.head_of(checkout, fleet.MAIN)
        if main_head is None:
            raise BadInput(f"the fleet {settings.fleet} has no main branch; it was not created by the pipeline")
        branch_head = git.head_of(checkout, review_branch(name))
        merged = branch_head is not None and git.is_ancestor(checkout, branch_head, main_head)
        found = _network_in_history(checkout, name, branch_head is not None)
        return Standing(
            name,
            tuple(sorted(owned_at(checkout, main_head, name))),
            branch_head,
            merged,
            found or _network_in_work_dir(settings, name),
        )


def propose_removal(
    standing: Standing, review_mode: str, settings: Settings, signer: Signer, run_trailers: Mapping[str, str]
) -> Removal:
    """The removal as a signed commit on the review branch, and on GitHub its pull request."""
    where = _where(standing.network)
    with fleet.session(settings) as checkout:
        outcome = remove(
            standing.name, checkout, signer, {**run_trailers, "Removes-Network": where}, f"delete ({where})"
        )
        if review_mode != "github":
            return Removal(outcome, None)
        provenance = review.provenance(checkout, outcome.commit)
    pull = review.open_pull_request(
        settings, outcome.branch, f"Delete cluster {standing.name} ({where})", _body(standing, provenance)
    )
    return Removal(outcome, pull)


def tear_down(
    standing: Standing, settings: Settings, force: bool, on_line: Callable[[str], None] | None = None
) -> Teardown:
    """Drop the review branch, then destroy the network and its state; refused while main holds the cluster.

    With `force` the network goes even then, and the branch (the removal under review) stays.
    Otherwise the branch goes first: one that main does not hold could still be approved and
    bring the manifests back onto a network that is gone. Main is read again once it is gone.
    """
    if standing.on_main and not force:
        raise Blocked(
            f"cluster {standing.name}'s manifests are still on main, so Flux still manages machines in its "
            "network; get the removal onto main first, or pass --force to destroy the network anyway"
        )
    # While main holds the cluster, the branch is its removal under review: it stays.
    dropped = None if standing.on_main else standing.branch_head
    if dropped is not None:
        _drop_branch(standing.name, dropped, settings)
    destroyed = False
    if standing.network is not None:
        region = standing.network.region
        destroyed = network.destroy(standing.name, region, access.for_target(settings, region), settings, on_line)
    # Its VPC CIDR is free for other clusters only once the network is gone.
    with fleet.session(settings) as checkout:
        fleet.release_cidrs(checkout, standing.name)
    return Teardown(branch_deleted=dropped is not None, destroyed=destroyed)


def _drop_branch(name: str, head: str, settings: Settings) -> None:
    """Delete the review branch as it was read at `head`, then check that main did not take the cluster meanwhile."""
    branch = review_branch(name)
    with git.clone(settings.fleet) as checkout:
        git.delete_branch(checkout, branch, head)
        git.fetch(checkout)
        main_head = git.head_of(checkout, fleet.MAIN)
        if main_head is not None and owned_at(checkout, main_head, name):
            raise GitConflict(
                f"cluster {name} reached main while {branch} was being deleted; "
                f"run delete-cluster {name} again to propose its removal"
            )


def _network_in_history(checkout: git.Checkout, name: str, with_branch: bool) -> Network | None:
    """The network named by the newest commit on main (or the review branch) that holds the cluster's folder.

    The fleet is the record every machine shares; a removal on main leaves the network's
    last description one commit back in main's history.
    """
    folder, _ = fleet.owned_paths(name)
    revs = [git.upstream(fleet.MAIN)] + ([git.upstream(review_branch(name))] if with_branch else [])
    touched = git.commits_touching(checkout, revs, folder)
    for rev in touched:
        described = _described(git.read_tree(checkout, rev, folder))
        if described is not None:
            region, vpc_id = described
            return Network(region, vpc_id, f"fleet commit {rev[:12]}")
    return None


def _network_in_work_dir(settings: Settings, name: str) -> Network | None:
    """The region of a network whose manifests never reached the fleet, from this machine's Terraform variables."""
    region = network.recorded_region(settings, name)
    var_file = settings.terraform_work_dir(name) / network.VAR_FILE
    return None if region is None else Network(region, None, str(var_file))


def _described(files: Mapping[str, str]) -> tuple[str, str | None] | None:
    """(region, VPC id) from a cluster folder's Cluster annotation and AWSCluster; None without a region."""
    region: object = None
    vpc_id: object = None
    for doc in _documents(files):
        if doc.get("kind") == "Cluster":
            region = _dig(doc, "metadata", "annotations", REGION_ANNOTATION)
        elif doc.get("kind") == "AWSCluster":
            vpc_id = _dig(doc, "spec", "network", "vpc", "id")
    if not isinstance(region, str) or not region:
        return None
    return region, vpc_id if isinstance(vpc_id, str) and vpc_id else None


def _documents(files: Mapping[str, str]) -> Iterator[Mapping[str, Any]]:
    """Every YAML mapping in `files`; a file that does not parse says nothing about the network."""
    for content in files.values():
        try:
            docs = yaml_docs.documents(content)
        except yaml_docs.Error:
            continue
        yield from (doc for doc in docs if isinstance(doc, Mapping))


def _dig(doc: object, *keys: str) -> object:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, Mapping) else None
    return doc


def _where(found: Network | None) -> str:
    if found is None:
        return "no network recorded"
    return f"VPC {found.vpc_id or '(id unknown)'} in {found.region}"


def _body(standing: Standing, provenance: pr_body.Provenance) -> str:
    """The pull request a reviewer decides the removal from: what goes from main, and what goes after."""
    name = standing.name
    files = [f"- `{path}`" for path in standing.on_main]
    after = (
        "No network is recorded for this cluster, so none will be destroyed."
        if standing.network is None
        else f"{_where(standing.network)} (from {standing.network.source}): once this is merged, "
        f"`python -m pipeline delete-cluster {name}` destroys it and removes its Terraform state."
    )
    lines = [
        f"## Delete cluster `{name}`",
        "",
        "Removes from main, after which Flux prunes the cluster's Cluster API objects:",
        "",
        *files,
        "",
        "## Network (Terraform), destroyed afterwards",
        "",
        after,
        "",
        "## Provenance",
        "",
        f"- Signed by OpenPGP key `{provenance.signer}`",
        f"- Pipeline run `{provenance.run_id}`",
        *([f"- Workflow run: {provenance.run_url}"] if provenance.run_url else []),
        "",
    ]
    return "\n".join(lines)
