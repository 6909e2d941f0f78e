"""`schemas fetch`: download the pinned CRDs once, checked against their pinned checksums."""

from __future__ import annotations

from pipeline import schemas
from pipeline.config import Settings
from pipeline.errors import EXIT_OK


def run(action: str, settings: Settings) -> int:
    if action != "fetch":
        raise AssertionError(action)  # argparse restricts the choices
    for path in schemas.fetch(settings.crds_cache, base_url=settings.crds_mirror):
        print(path)
    print(f"validation uses these unless PIPELINE_CRDS_DIR names a directory; cache: {settings.crds_cache}")
    return EXIT_OK
