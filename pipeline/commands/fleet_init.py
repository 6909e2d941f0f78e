"""`fleet init`: an empty remote becomes the fleet, by one signed first commit; a fleet already there is adopted.

new-cluster does the same by itself, through the same function, so this command is only needed to make the
fleet before its first cluster (for the management cluster's bootstrap, say).
"""

from __future__ import annotations

from pipeline import fleet, signing
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.report import Outcome, Reporter, markdown_list


def run(settings: Settings, reporter: Reporter) -> int:
    signer = signing.signer_for(settings)
    with reporter.stage("fleet"):
        founded = fleet.ensure_fleet(settings, signer)
    reporter.finish(finished(settings, founded.commit, created=founded.created, signer=signer.fingerprint))
    return EXIT_OK


def finished(settings: Settings, commit: str, *, created: bool, signer: str) -> Outcome:
    url = fleet.flux_url(settings)
    done = (
        f"fleet {settings.fleet}: main at {commit}, its first commit, signed by {signer}"
        if created
        else f"fleet {settings.fleet}: holds a fleet already, adopted as it is (main at {commit}); nothing pushed"
    )
    lines = [done]
    if created and url == fleet.PLACEHOLDER_URL:
        lines.append(
            f"Flux cannot fetch a path on this machine: {fleet.GITREPOSITORY_FILE} names {url}; a fleet that Flux "
            "applies is initialised at the address Flux reaches, or with --flux-url naming it"
        )
    elif created:
        lines.append(f"Flux fetches it from {url}, applying only commits signed by the keys in {fleet.KEYS_DIR}")
    lines.append("next: python -m pipeline new-cluster NAME, or bootstrap the management cluster (README)")
    return Outcome(
        tuple(lines),
        {"fleet": settings.fleet, "commit": commit, "created": created, "flux_url": url if created else None},
        summary=markdown_list("Fleet", lines),
        outputs={"commit": commit},
    )
