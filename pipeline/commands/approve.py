"""`approve NAME`: local review; main fast-forwards to the verified, signed review branch."""

from __future__ import annotations

from pipeline import approve as review
from pipeline import signing
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.report import Reporter


def run(name: str, settings: Settings, reporter: Reporter) -> int:
    with reporter.stage("approve"):
        approval = review.approve(name, settings, signing.signer_for(settings))
    if approval.how == "already merged":
        reporter.info(f"cluster/{name} is already on main ({approval.main[:12]}); nothing to do")
    else:
        reporter.info(f"main is now {approval.main[:12]} ({approval.how}), signed by {approval.signer}")
        reporter.info("Flux on the management cluster applies it on its next pull")
    return EXIT_OK
