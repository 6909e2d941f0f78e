"""`approve NAME | --keys`: local review; main takes the verified, signed review branch."""

from __future__ import annotations

from pipeline import approve as landing
from pipeline import signing
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.report import Outcome, Reporter, markdown_list


def run(name: str | None, settings: Settings, reporter: Reporter) -> int:
    target = landing.keys_review() if name is None else landing.cluster_review(name)
    with reporter.stage("approve"):
        approval = landing.approve(target, settings, signing.signer_for(settings))
    reporter.finish(_finished(target, approval))
    return EXIT_OK


def _finished(target: landing.Review, approval: landing.Approval) -> Outcome:
    return landed(
        target,
        approval,
        merged=(
            f"main is now {approval.main[:12]} ({approval.how}), signed by {approval.signer}",
            "Flux on the management cluster applies it on its next pull",
        ),
        title=f"Approved {target.label}",
        review=target.label,
    )


def landed(
    target: landing.Review, approval: landing.Approval, *, merged: tuple[str, ...], title: str, **extra: str
) -> Outcome:
    """How a review branch's landing on main ends: what main is now, or that it already was."""
    changed = approval.how != "already merged"
    lines = merged if changed else (f"{target.branch} is already on main ({approval.main[:12]}); nothing to do",)
    data = {
        "branch": target.branch,
        "main": approval.main,
        "how": approval.how,
        "signer": approval.signer,
        "changed": changed,
        **extra,
    }
    return Outcome(lines, data, summary=markdown_list(title, lines))
