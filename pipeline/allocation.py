"""Where a cluster's VPC sits: the CIDRs the fleet already uses, and the one this cluster gets."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline import commit, fleet, git, journal
from pipeline.errors import SpecError
from pipeline.spec import ClusterSpec

FLEET_POOL = ipaddress.IPv4Network("10.0.0.0/8")
DEFAULT_PREFIX = 16


@dataclass(frozen=True)
class SpecCheckpoint(journal.Flat):
    """What the spec stage leaves in the run journal: the VPC CIDR the cluster claimed in the fleet."""

    cidr: str


@dataclass(frozen=True)
class Known:
    taken: frozenset[str]  # held by other clusters: on main, or claimed by a run
    current: str | None  # this cluster's own: its claim, else its review branch, else main


def known_cidrs(checkout: git.Checkout, name: str, on_main: Sequence[fleet.Neighbour]) -> Known:
    """The CIDRs the fleet holds now: on main, and claimed by runs anywhere (read afresh from the remote)."""
    claims = fleet.cidr_claims(checkout)
    taken = {n.cidr for n in on_main if n.cluster != name and n.cidr is not None}
    taken |= {cidr for cidr, holder in claims.items() if holder != name}
    claimed = next((cidr for cidr, holder in claims.items() if holder == name), None)
    return Known(frozenset(taken), claimed or _in_fleet(checkout, name, on_main))


def known_in(checkout: git.Checkout | None, name: str) -> Known:
    """`known_cidrs` against main for a command that reads the fleet, if there is one yet."""
    return Known(frozenset(), None) if checkout is None else known_cidrs(checkout, name, fleet.neighbours(checkout))


def place(cluster: ClusterSpec, known: Known) -> ClusterSpec:
    """The spec with its VPC CIDR: the one it names, free of the others; else the one it has; else a free one.

    A re-run of a spec without a CIDR keeps the cluster's block instead of moving its network.
    """
    taken = [ipaddress.ip_network(cidr) for cidr in sorted(known.taken)]
    named = cluster.network.cidr
    if named is None:
        cidr = known.current if known.current is not None else str(allocate(taken))
        return cluster.model_copy(update={"network": cluster.network.model_copy(update={"cidr": cidr})})
    for other in taken:
        if ipaddress.ip_network(named).overlaps(other):
            raise SpecError(
                "network.cidr",
                f"{named} overlaps {other}, used by another cluster in the fleet",
                f"choose a free block such as {allocate(taken)} or omit cidr to allocate one",
            )
    return cluster


def allocate(taken: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> ipaddress.IPv4Network:
    """The first /16 of the fleet pool that overlaps no cluster's block, from 10.20.0.0 up."""
    blocks = list(FLEET_POOL.subnets(new_prefix=DEFAULT_PREFIX))
    ordered = blocks[20:] + blocks[:20]
    used = list(taken)
    for block in ordered:
        if not any(block.overlaps(other) for other in used):
            return block
    raise SpecError("network.cidr", "the fleet pool 10.0.0.0/8 is full", "set network.cidr explicitly")


def _in_fleet(checkout: git.Checkout, name: str, on_main: Sequence[fleet.Neighbour]) -> str | None:
    """The CIDR the cluster's review branch records, else main's."""
    folder, _ = fleet.owned_paths(name)
    head = git.head_of(checkout, commit.review_branch(name))
    under_review = None if head is None else git.read_file(checkout, head, f"{folder}{fleet.CLUSTER_FILE}")
    if under_review is not None:
        return fleet.recorded_cidr(under_review)
    return next((n.cidr for n in on_main if n.cluster == name), None)
