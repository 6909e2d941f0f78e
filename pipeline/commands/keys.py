"""`keys export | add FILE | retire FINGERPRINT`: the keys the fleet trusts, changed by signed review."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import fleet, keys, signing
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, BadInput
from pipeline.model import CommitResult


def run(action: str, settings: Settings, argument: str | None = None) -> int:
    """`argument` is the key file for add, the fingerprint for retire; export takes none."""
    if action == "export":
        if argument is not None:
            raise BadInput(f"keys export takes no argument (got '{argument}')")
        return _export(settings)
    if argument is None:
        raise BadInput(f"keys {action} needs {'a public key file' if action == 'add' else 'a fingerprint'}")
    signer = signing.signer_for(settings)
    if action == "add":
        result = keys.add(settings, signer, _read_key_file(Path(argument)))
        what = f"trusting the key in {argument}"
    elif action == "retire":
        result = keys.retire(settings, signer, argument)
        what = f"retiring key {argument}"
    else:
        raise AssertionError(action)  # argparse restricts the choices
    _report(result, what)
    return EXIT_OK


def _export(settings: Settings) -> int:
    if fleet.exists(settings):
        with fleet.session(settings) as checkout:
            found = fleet.trusted_keys(checkout)
    else:
        # No fleet yet: the key a new fleet will trust is this machine's signer.
        found = (signing.export_public(signing.signer_for(settings)),)
    sys.stdout.write("".join(key if key.endswith("\n") else key + "\n" for key in found))
    return EXIT_OK


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read the key file {path} ({err}); give an ASCII-armored public key file") from err


def _report(result: CommitResult, what: str) -> None:
    if not result.changed:
        print(f"{result.branch} at {result.commit} already has that change; nothing to commit")
    else:
        print(f"{result.branch} at {result.commit}: {what}, signed by {result.signer}")
    print(f"next: review {result.branch}, then `{keys.NEXT_STEP}`")
