"""`keys export`: the ASCII-armored public keys the fleet trusts (what Flux verifies with)."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import fleet, signing
from pipeline.config import Settings, is_git_url
from pipeline.errors import EXIT_OK


def run(action: str, settings: Settings) -> int:
    if action != "export":
        raise AssertionError(action)  # argparse restricts the choices
    if is_git_url(settings.fleet) or Path(settings.fleet).exists():
        keys = fleet.trusted_keys(settings)
    else:
        # No fleet yet: the key a new fleet will trust is this machine's signer.
        keys = (signing.export_public(signing.signer_for(settings)),)
    sys.stdout.write("".join(key if key.endswith("\n") else key + "\n" for key in keys))
    return EXIT_OK
