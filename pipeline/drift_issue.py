"""One GitHub issue per drifted cluster: opened when its plan finds changes, kept to the current plan, closed
once the plan finds none.

An issue is the cluster's when it is open, carries the drift label, has the cluster's title and its
body starts with the cluster's marker; the label narrows the listing, the marker keeps an issue
someone merely titled alike from being taken over.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import github

LABEL = "drift"
_MARKER = "<!-- fleet-pipeline-drift {name} -->"
_INTRO = (
    "The plan of this cluster's spec finds changes that no run has applied: the network or the fleet's main "
    "no longer matches the spec. This issue follows the current plan and closes itself once the plan finds "
    "no changes; `new-cluster {name}` with the spec applies it."
)
PLAN_ROOM = 65536 - 1024  # GitHub's limit on an issue body, less the marker and the introduction


@dataclass(frozen=True)
class Kept:
    action: str  # opened | updated | unchanged | closed | none
    issue: github.Issue | None


def title(name: str) -> str:
    return f"Drift: cluster {name}"


def find(client: github.Client, owner: str, repo: str, name: str) -> github.Issue | None:
    """The cluster's open drift issue, the oldest if a race made two; None when it has none."""
    marker = _MARKER.format(name=name)
    mine = [
        issue
        for issue in client.open_issues(owner, repo, LABEL)
        if issue.title == title(name) and issue.body.startswith(marker)
    ]
    return mine[0] if mine else None


def keep(  # noqa: PLR0917 (owner, repo and cluster, as every github call names them)
    client: github.Client,
    owner: str,
    repo: str,
    name: str,
    current: github.Issue | None,
    plan_markdown: str | None,
    closing_note: str,
) -> Kept:
    """Bring the cluster's issue to what its plan says: `plan_markdown` None means no drift.

    The body is the plan alone, with nothing of the run that wrote it, so an unchanged drift
    edits nothing and notifies nobody.
    """
    if plan_markdown is None:
        if current is None:
            return Kept("none", None)
        return Kept("closed", client.close_issue(owner, repo, current.number, closing_note))
    body = f"{_MARKER.format(name=name)}\n\n{_INTRO.format(name=name)}\n\n{plan_markdown}"
    if current is None:
        return Kept("opened", client.create_issue(owner, repo, title(name), body, [LABEL]))
    if current.body == body:
        return Kept("unchanged", current)
    return Kept("updated", client.update_issue(owner, repo, current.number, body))
