"""`merge NAME`: GitHub review. Main fast-forwards to the head a reviewer approved, signed by the fleet's key.

GitHub's own merge buttons would sign with its web-flow key, which Flux does not trust.
"""

from __future__ import annotations

from pipeline import approve as landing
from pipeline import github, review
from pipeline.commands.approve import landed
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, BadInput, Blocked
from pipeline.report import Outcome, Reporter


def run(name: str, settings: Settings, reporter: Reporter) -> int:
    owner, repo = review.repository(settings)
    gh = review.client(settings)
    target = landing.cluster_review(name)
    with reporter.stage("merge"):
        pull = gh.find_open_pull(owner, repo, target.branch, review.BASE)
        if pull is None:
            raise BadInput(
                f"no open pull request from {target.branch} in {owner}/{repo}; "
                f"run new-cluster {name} --review github first"
            )
        if not github.approved_at(gh.reviews(owner, repo, pull.number), pull.head_sha):
            raise Blocked(
                f"pull request #{pull.number} is not approved at its head {pull.head_sha[:12]} "
                f"(or changes were requested); a reviewer approves {pull.url} first"
            )
        approval = landing.merge(target, settings, pull.head_sha)
    reporter.finish(_finished(target, approval, pull))
    return EXIT_OK


def _finished(target: landing.Review, approval: landing.Approval, pull: github.PullRequest) -> Outcome:
    return landed(
        target,
        approval,
        merged=(f"main is now {approval.main[:12]}, the approved head of #{pull.number}, signed by {approval.signer}",),
        title=f"Merged {target.label}: [#{pull.number}]({pull.url})",
        pull_request=pull.url,
    )
