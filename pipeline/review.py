"""The review stage on GitHub: the signed branch goes up as one pull request per cluster.

GitHub's merge buttons sign with GitHub's own web-flow key, which would sign anything a writer
clicks; Flux trusts only the fleet's keys. So a reviewer approves the pull request and `merge`
fast-forwards main to the very commit they approved, which the fleet's key signed.
"""

from __future__ import annotations

from pipeline import github
from pipeline.config import Settings
from pipeline.errors import BadInput

BASE = "main"


def repository(settings: Settings) -> tuple[str, str]:
    """The fleet's owner/name on GitHub: --github-repo, else parsed from the fleet remote."""
    if settings.github.repo:
        owner, _, name = settings.github.repo.partition("/")
        if not owner or not name or "/" in name:
            raise BadInput(f"--github-repo '{settings.github.repo}' is not owner/name; write it as acme/fleet")
        return owner, name
    return github.repo_from_remote(settings.fleet)


def client(settings: Settings) -> github.Client:
    if not settings.github.token:
        raise BadInput("review on GitHub needs a token: set GITHUB_TOKEN (contents and pull-requests write)")
    return github.Client(settings.github.api_url, settings.github.token)


def check(settings: Settings) -> None:
    """Everything a GitHub review needs that can be checked before anything runs."""
    repository(settings)
    client(settings)


def open_pull_request(settings: Settings, branch: str, title: str, body: str, changed: bool) -> github.PullRequest:
    """Open the branch's pull request, or update the open one; unchanged content leaves it alone."""
    owner, name = repository(settings)
    gh = client(settings)
    if not changed:
        existing = gh.find_open_pull(owner, name, branch, BASE)
        if existing is not None:
            return existing
    return github.open_or_update(
        gh, owner, name, branch, BASE, title, body, settings.github.labels, settings.github.reviewers
    )
