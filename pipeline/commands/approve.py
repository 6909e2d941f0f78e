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
    merged = approval.how != "already merged"
    if merged:
        lines: tuple[str, ...] = (
            f"main is now {approval.main[:12]} ({approval.how}), signed by {approval.signer}",
            "Flux on the management cluster applies it on its next pull",
        )
    else:
        lines = (f"{target.branch} is already on main ({approval.main[:12]}); nothing to do",)
    data = {
        "review": target.label,
        "branch": target.branch,
        "main": approval.main,
        "how": approval.how,
        "signer": approval.signer,
        "changed": merged,
    }
    return Outcome(lines, data, summary=markdown_list(f"Approved {target.label}", lines))
