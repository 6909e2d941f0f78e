"""Each cluster's health as the reconciler reported it: the commit status Flux posted on main's head.

The management cluster's Flux posts, for each cluster's Kustomization, whether the cluster was
built and its add-ons are Ready (flux/system/health.yaml). Reading it back needs the forge's API
only, never a cluster credential; where there is no forge to ask, the health is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pipeline import fleet, review
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.render import flux_name

State = Literal["ready", "not-ready", "reconciling", "unknown"]
_STATES: dict[str, State] = {"success": "ready", "failure": "not-ready", "error": "not-ready", "pending": "reconciling"}


@dataclass(frozen=True)
class Health:
    state: State
    detail: str  # what Flux said, or why nothing is known


def context(cluster: str) -> str:
    """The commit status context Flux posts a cluster's health under."""
    return f"{fleet.HEALTH_CONTEXT_PREFIX}{flux_name(cluster)}"


def read(settings: Settings, main_head: str | None, clusters: Iterable[str]) -> dict[str, Health]:
    """Each cluster's health on main's head: one call to the forge for the whole fleet."""
    names = list(clusters)
    if main_head is None:
        return _unknown(names, "the fleet has no main branch")
    why = _unknowable(settings)
    if why is not None:
        return _unknown(names, why)
    try:
        owner, repo = review.repository(settings)
        posted = review.client(settings).commit_statuses(owner, repo, main_head)
    except PipelineError as failed:
        return _unknown(names, str(failed))
    found: dict[str, Health] = {}
    for name in names:
        status = posted.get(context(name))
        if status is None:
            found[name] = Health(
                "unknown", f"Flux has posted no {context(name)} status on main's head {main_head[:12]}"
            )
        else:
            found[name] = Health(_STATES.get(status.state, "unknown"), status.description)
    return found


def _unknown(names: Iterable[str], why: str) -> dict[str, Health]:
    return {name: Health("unknown", why) for name in names}


def _unknowable(settings: Settings) -> str | None:
    if fleet.forge_repository_url(settings) is None:
        return "the fleet is not on a forge that Flux reports to; set PIPELINE_GITHUB_REPO when it is"
    if not settings.github.token:
        return "set GITHUB_TOKEN to read the commit statuses Flux posts"
    return None
