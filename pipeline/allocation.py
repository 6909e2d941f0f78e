"""Which VPC CIDRs the fleet already uses, and which one a cluster already has."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import commit, fleet, validate
from pipeline.config import Settings
from pipeline.model import Manifests


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


def _in_fleet(settings: Settings, name: str, on_main: tuple[Manifests, ...]) -> str | None:
    under_review = fleet.cluster_manifests(settings, commit.review_branch(name))
    for mine in (m for m in (*under_review, *on_main) if m.cluster == name):
        return validate.vpc_cidr(mine)
    return None
