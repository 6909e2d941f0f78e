"""Where a cluster's VPC sits: the CIDRs the fleet already uses, and the one this cluster gets."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import commit, fleet, validate
from pipeline.config import Settings
from pipeline.errors import SpecError
from pipeline.model import Manifests
from pipeline.spec import ClusterSpec

FLEET_POOL = ipaddress.IPv4Network("10.0.0.0/8")
DEFAULT_PREFIX = 16


@dataclass(frozen=True)
class Known:
    taken: frozenset[str]  # held by other clusters: on main, or claimed by a run
    current: str | None  # this cluster's own: its claim, else its review branch, else main


def known_cidrs(settings: Settings, name: str, on_main: tuple[Manifests, ...]) -> Known:
    if not fleet.exists(settings):
        return Known(frozenset(), None)
    claims = fleet.cidr_claims(settings)
    taken = {cidr for m in on_main if m.cluster != name if (cidr := validate.vpc_cidr(m)) is not None}
    taken |= {cidr for cidr, holder in claims.items() if holder != name}
    claimed = next((cidr for cidr, holder in claims.items() if holder == name), None)
    return Known(frozenset(taken), claimed or _in_fleet(settings, name, on_main))


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


def _in_fleet(settings: Settings, name: str, on_main: tuple[Manifests, ...]) -> str | None:
    under_review = fleet.cluster_manifests(settings, commit.review_branch(name))
    for mine in (m for m in (*under_review, *on_main) if m.cluster == name):
        return validate.vpc_cidr(mine)
    return None
