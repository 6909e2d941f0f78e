"""`schemas fetch`: download the pinned CRDs once, checked against their pinned checksums."""

from __future__ import annotations

from pipeline import schemas
from pipeline.config import Settings
from pipeline.errors import EXIT_OK
from pipeline.report import Outcome, Reporter, markdown_list


def run(action: str, settings: Settings, reporter: Reporter) -> int:
    if action != "fetch":
        raise AssertionError(action)  # argparse restricts the choices
    files = [str(path) for path in schemas.fetch(settings.crds_cache, base_url=settings.crds_mirror)]
    note = f"validation uses these unless PIPELINE_CRDS_DIR names a directory; cache: {settings.crds_cache}"
    summary = markdown_list("CRD schemas", [f"{len(files)} files in {settings.crds_cache}"])
    reporter.finish(Outcome((*files, note), {"files": files, "cache": str(settings.crds_cache)}, summary=summary))
    return EXIT_OK
