"""The fleet operations as the tests call them: by settings, each through a session of its own."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline import commit as commit_stage
from pipeline import fleet, git
from pipeline.config import Settings
from pipeline.model import CommitResult, Manifests
from pipeline.signing import Signer


def commit(
    manifests: Manifests, settings: Settings, signer: Signer, trailers: Mapping[str, str], summary: str
) -> CommitResult:
    with fleet.session(settings) as checkout:
        return commit_stage.commit(manifests, checkout, signer, trailers, summary)


def remove(name: str, settings: Settings, signer: Signer, trailers: Mapping[str, str], summary: str) -> CommitResult:
    with fleet.session(settings) as checkout:
        return commit_stage.remove(name, checkout, signer, trailers, summary)


def cluster_manifests(settings: Settings, ref: str = fleet.MAIN) -> tuple[Manifests, ...]:
    """Every cluster on branch `ref` (none when it does not exist), by name, each with all its files."""
    with fleet.session(settings) as checkout:
        rev = git.head_of(checkout, ref)
        if rev is None:
            return ()
        return tuple(fleet.cluster_at(checkout, rev, n.cluster) for n in fleet.neighbours_at(checkout, rev))


def trusted_keys(settings: Settings, ref: str = fleet.MAIN) -> tuple[str, ...]:
    with fleet.session(settings) as checkout:
        return fleet.trusted_keys(checkout, ref)


def cidr_claims(settings: Settings) -> dict[str, str]:
    with fleet.session(settings) as checkout:
        return fleet.cidr_claims(checkout)


def claim_cidr(settings: Settings, cidr: str, cluster: str) -> str:
    with fleet.session(settings) as checkout:
        return fleet.claim_cidr(checkout, cidr, cluster)


def release_cidrs(settings: Settings, cluster: str) -> None:
    with fleet.session(settings) as checkout:
        fleet.release_cidrs(checkout, cluster)
