"""`keys export | add FILE | retire FINGERPRINT`: the keys the fleet trusts, changed by signed review."""

from __future__ import annotations

from pathlib import Path

from pipeline import fleet, keys, signing
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, BadInput
from pipeline.model import CommitResult
from pipeline.report import Outcome, Reporter, markdown_list


def run(action: str, settings: Settings, reporter: Reporter, argument: str | None = None) -> int:
    """`argument` is the key file for add, the fingerprint for retire; export takes none."""
    if action == "export":
        if argument is not None:
            raise BadInput(f"keys export takes no argument (got '{argument}')")
        reporter.finish(_export(settings))
        return EXIT_OK
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
    reporter.finish(_committed(result, what))
    return EXIT_OK


def _export(settings: Settings) -> Outcome:
    """The armored keys as the lines a person redirects into a file, and inside the JSON object for a program."""
    if fleet.exists(settings):
        with fleet.session(settings) as checkout:
            found = fleet.trusted_keys(checkout)
        source = f"main of {settings.fleet}"
    else:
        # No fleet yet: the key a new fleet will trust is this machine's signer.
        found = (signing.export_public(signing.signer_for(settings)),)
        source = "this machine's signing key (no fleet yet)"
    text = "".join(key if key.endswith("\n") else key + "\n" for key in found)
    return Outcome(
        tuple(text.splitlines()),
        {"keys": list(found), "source": source},
        summary=markdown_list("Trusted keys", [f"{len(found)} from {source}"]),
    )


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read the key file {path} ({err}); give an ASCII-armored public key file") from err


def _committed(result: CommitResult, what: str) -> Outcome:
    next_step = f"review {result.branch}, then `{keys.NEXT_STEP}`"
    if not result.changed:
        done = f"{result.branch} at {result.commit} already has that change; nothing to commit"
    else:
        done = f"{result.branch} at {result.commit}: {what}, signed by {result.signer}"
    lines = (done, f"next: {next_step}")
    data = {
        "branch": result.branch,
        "commit": result.commit,
        "changed": result.changed,
        "signer": result.signer,
        "next": next_step,
    }
    return Outcome(lines, data, summary=markdown_list("Trusted keys", lines))
