"""The review stage on GitHub: the signed branch goes up as one pull request per cluster.

GitHub's merge buttons sign with GitHub's own web-flow key, which would sign anything a writer
clicks; Flux trusts only the fleet's keys. So a reviewer approves the pull request and `merge`
fast-forwards main to the very commit they approved, which the fleet's key signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import fleet, git, github, journal, pr_body, signing
from pipeline.config import Settings
from pipeline.errors import BadInput

BASE = "main"


@dataclass(frozen=True)
class ReviewCheckpoint(journal.Flat):
    """What the review stage leaves in the run journal: the pull request the branch is up for review in."""

    pull_request: str


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
    """Everything a GitHub review needs, checked before anything runs: a bad token or a repository it
    cannot write costs one call, before Terraform or a push."""
    owner, name = repository(settings)
    client(settings).check_push_access(owner, name)


def provenance(checkout: git.Checkout, head: str) -> pr_body.Provenance:
    """What the review branch's head records of the run that made it, and the trusted key that signed it."""
    main_keys = fleet.keys_at(checkout, git.upstream(fleet.MAIN))
    signer = signing.verify_commit(checkout.path, head, main_keys)
    return pr_body.Provenance.of_commit(signer, git.trailers(checkout, head))


def open_pull_request(settings: Settings, branch: str, title: str, body: str) -> github.PullRequest:
    """Open the branch's pull request, or bring the open one's title and body to what describes its head.

    Compared on every run, not only when this run committed: a run that pushed and then failed
    before reaching GitHub leaves text describing the previous head, which the next run mends.
    """
    owner, name = repository(settings)
    return github.open_or_update(
        client(settings), owner, name, branch, BASE, title, body, settings.github.labels, settings.github.reviewers
    )
