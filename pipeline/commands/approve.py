"""`approve NAME | --keys`: local review; main takes the verified, signed review branch."""

from __future__ import annotations

from pipeline import approve as landing
from pipeline import signing
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.report import Reporter


def run(name: str | None, settings: Settings, reporter: Reporter) -> int:
    target = landing.keys_review() if name is None else landing.cluster_review(name)
    with reporter.stage("approve"):
        approval = landing.approve(target, settings, signing.signer_for(settings))
    if approval.how == "already merged":
        reporter.info(f"{target.branch} is already on main ({approval.main[:12]}); nothing to do")
    else:
        reporter.info(f"main is now {approval.main[:12]} ({approval.how}), signed by {approval.signer}")
        reporter.info("Flux on the management cluster applies it on its next pull")
    return EXIT_OK
