"""Key rotation: the fleet's trusted keys change only through a signed, reviewed commit.

Flux verifies a new head of main with the keys the management cluster already holds,
those on main before the change. So every change to the keys is signed by a key that
main trusts now, and no change may leave main without a key that can sign the next one.
Changes go to the review branch `keys/rotation`; approve it with `approve --keys`.

Rotating key OLD to key NEW:
1. `keys add NEW.asc`, signed by OLD (trusted on main): main will trust both.
2. `approve --keys`: main now lists OLD and NEW, and Flux holds both.
3. Switch the signer to NEW (PIPELINE_SIGNING_KEY, or the local key on the local target).
4. `keys retire OLD`, signed by NEW: a key never retires itself, and one key always remains.
5. `approve --keys`: main trusts NEW only.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline import fleet, git, process
from pipeline.approve import KEYS_BRANCH
from pipeline.config import Settings
from pipeline.errors import BadInput, CommandFailed, SigningError
from pipeline.model import CommitResult
from pipeline.signing import Signer, gpg_env, verify_commit

BRANCH = KEYS_BRANCH
NEXT_STEP = "python -m pipeline approve --keys"
_PUBLIC_KEY_ARMOR = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
_UNUSABLE = {"r": "is revoked", "e": "has expired"}


@dataclass(frozen=True)
class PublicKey:
    fingerprint: str  # of the primary key, 40 hex digits, upper case
    user_id: str
    armored: str


@dataclass(frozen=True)
class _Change:
    """What one rotation commit does to flux/system/keys/."""

    message: str
    added: PublicKey | None = None
    retired: str | None = None  # a fingerprint


# Given the fingerprints listed on main and on the branch's start, the change (None: nothing to do).
_Plan = Callable[[frozenset[str], frozenset[str]], _Change | None]


def add(settings: Settings, signer: Signer, armored: str) -> CommitResult:
    """Commit the public key `armored` to the trusted keys on keys/rotation, signed by `signer`."""
    key = public_key(armored)

    def plan(on_main: frozenset[str], listed: frozenset[str]) -> _Change | None:
        if key.fingerprint in listed:
            return None
        return _Change(
            _message(f"trust {key.fingerprint}", f"Adds the public key of {key.user_id}.", signer),
            added=key,
        )

    return _rotate(settings, signer, plan)


def retire(settings: Settings, signer: Signer, fingerprint: str) -> CommitResult:
    """Commit the removal of trusted key `fingerprint` on keys/rotation, signed by `signer`."""
    wanted = "".join(fingerprint.split()).upper()

    def plan(on_main: frozenset[str], listed: frozenset[str]) -> _Change | None:
        if wanted not in listed:
            if wanted in on_main:
                return None  # already retired on the branch
            trusted = ", ".join(sorted(listed))
            raise BadInput(f"key '{fingerprint}' is not one the fleet trusts; trusted keys: {trusted}")
        if wanted == signer.fingerprint:
            raise BadInput(
                f"key {wanted} would retire itself: the next commit could not be verified; "
                "sign with another trusted key first"
            )
        if listed == {wanted}:
            raise BadInput(f"key {wanted} is the fleet's last trusted key; add its successor first (`keys add`)")
        return _Change(
            _message(f"retire {wanted}", "Flux stops trusting commits signed by this key.", signer),
            retired=wanted,
        )

    return _rotate(settings, signer, plan)


def public_key(armored: str) -> PublicKey:
    """The one OpenPGP public key in `armored`, read by gpg in a throwaway home; BadInput otherwise."""
    if _PUBLIC_KEY_ARMOR not in armored:
        raise BadInput("the key file is not an ASCII-armored public key; export one with `gpg --armor --export KEY`")
    records = [line.split(":") for line in _show_keys(armored).splitlines()]
    if any(fields[0] == "sec" for fields in records):
        raise BadInput("the key file holds a secret key; give only its public part (`gpg --armor --export KEY`)")
    primaries = [i for i, fields in enumerate(records) if fields[0] == "pub"]
    if len(primaries) != 1:
        raise BadInput(f"the key file holds {len(primaries)} public keys; give exactly one")
    start = primaries[0]
    pub = records[start]
    fingerprint = next((f[9] for f in records[start:] if f[0] == "fpr"), "")
    user_id = next((f[9] for f in records[start:] if f[0] == "uid"), "no user id")
    if not _FINGERPRINT.match(fingerprint):
        raise BadInput("the key file's key has no v4 fingerprint; give an OpenPGP v4 public key")
    if pub[1] in _UNUSABLE:
        raise BadInput(f"key {fingerprint} {_UNUSABLE[pub[1]]}; give a usable key")
    if "S" not in pub[11]:
        raise BadInput(f"key {fingerprint} cannot sign; give a key with a signing (sub)key")
    text = armored if armored.endswith("\n") else armored + "\n"
    return PublicKey(fingerprint, user_id, text)


def _rotate(settings: Settings, signer: Signer, plan: _Plan) -> CommitResult:
    """One signed commit on keys/rotation making `plan`'s change, verified by main's keys, then pushed.

    The branch continues from its remote head while that holds unapproved work, and
    starts again from main once main includes it.
    """
    with git.clone(settings.fleet) as checkout:
        main_head = git.head_of(checkout, fleet.MAIN)
        if main_head is None:
            raise BadInput(f"the fleet {settings.fleet} has no main branch; create it with new-cluster first")
        on_main = fleet.key_fingerprints_at(checkout, main_head)
        if signer.fingerprint not in on_main:
            raise SigningError(
                f"key {signer.fingerprint} is not trusted on main of {settings.fleet}, so Flux would refuse "
                "its commits; sign with one of the keys `python -m pipeline keys export` prints"
            )
        branch_head = git.head_of(checkout, BRANCH)
        pending = branch_head is not None and not git.is_ancestor(checkout, branch_head, main_head)
        start = branch_head if pending and branch_head is not None else main_head
        listed = fleet.key_fingerprints_at(checkout, start)
        change = plan(on_main, listed)
        if change is None:
            return CommitResult(BRANCH, start, changed=False, signer=signer.fingerprint)
        git.switch(checkout, BRANCH, start)
        _apply(checkout, change, listed)
        new_head = git.commit(checkout, change.message, signer)
        verify_commit(checkout.path, new_head, fleet.keys_at(checkout, main_head))
        git.push(checkout, BRANCH)
    return CommitResult(BRANCH, new_head, changed=True, signer=signer.fingerprint)


def _apply(checkout: git.Checkout, change: _Change, listed: frozenset[str]) -> None:
    """Write the change into the work tree, with the Secret's file list regenerated from the keys kept."""
    kept = set(listed)
    files: dict[str, str] = {}
    if change.added is not None:
        kept.add(change.added.fingerprint)
        files[_key_path(change.added.fingerprint)] = change.added.armored
    if change.retired is not None:
        kept.discard(change.retired)
        git.delete_files(checkout, [_key_path(change.retired)])
    key_files = [_key_path(fpr).removeprefix(fleet.SYSTEM_DIR) for fpr in kept]
    files[fleet.SYSTEM_KUSTOMIZATION] = fleet.system_kustomization(key_files)
    git.write_files(checkout, files)
    git.stage_all(checkout)


def _key_path(fingerprint: str) -> str:
    return f"{fleet.KEYS_DIR}{fingerprint}.asc"


def _show_keys(armored: str) -> str:
    home = Path(tempfile.mkdtemp(prefix="fleet-key-"))
    try:
        with gpg_env(home) as env:
            argv = ["gpg", "--batch", "--no-tty", "--with-colons", "--show-keys"]
            return process.run(argv, env=env, stdin=armored).stdout
    except CommandFailed as failed:
        raise BadInput(f"gpg cannot read the key file: {failed}") from failed
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _message(subject: str, body: str, signer: Signer) -> str:
    return (
        f"keys: {subject}\n\n{body}\n"
        f"For review on {BRANCH}; Flux verifies it with the keys on main before it.\n\n"
        f"Signing-Key: {signer.fingerprint}\n"
    )
