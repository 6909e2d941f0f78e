"""OpenPGP keys and commit signatures, through the gpg and git command lines."""

from __future__ import annotations

import fcntl
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import process
from pipeline.config import PASSPHRASE_ENV, Settings
from pipeline.errors import CommandFailed, SigningError

LOCAL_KEY_UID = "Fleet pipeline (LOCAL ONLY, not for production) <pipeline@local.invalid>"

# Without /run/user/<uid>, gpg 2.2 puts the agent's sockets in the home itself. sun_path holds
# 108 bytes, and gpg binds no socket path of 107 or more; the longest name is S.gpg-agent.browser.
_MAX_HOME_LENGTH = 106 - len("/S.gpg-agent.browser")


@dataclass(frozen=True)
class Signer:
    fingerprint: str  # of the primary key, 40 hex digits
    gnupg_home: Path | None  # None: the user's own GnuPG home and agent
    local_only: bool
    passphrase: str | None = field(default=None, repr=False, compare=False)  # handed to gpg, never on argv


@contextmanager
def gpg_env(home: Path | None) -> Iterator[dict[str, str]]:
    """Environment for gpg, and for git calling gpg, using `home`.

    A home the pipeline owns has its agent stopped on exit, so no run leaves a
    gpg-agent behind; the user's own home (None) and agent are left as they are.
    A home whose path is too long for the agent's sockets is reached through a
    short symlink in /tmp that lives only as long as this context: the sockets
    then land in the real home under a path short enough to bind.
    """
    if home is None:
        yield {}
        return
    with _exclusive(home) as outermost, _short_path(home) as usable:
        env = {"GNUPGHOME": str(usable)}
        try:
            yield env
        finally:
            if outermost:
                process.run(["gpgconf", "--kill", "all"], env=env, check=False)


_held: dict[Path, int] = {}


@contextmanager
def _exclusive(home: Path) -> Iterator[bool]:
    """One process at a time uses a home the pipeline owns, so none stops the agent under another.

    Yields whether this is the outermost use in this process (the one that stops the agent).
    """
    key = home.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield False
        finally:
            _held[key] -= 1
        return
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (home / "pipeline.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield True
        finally:
            del _held[key]


def ensure_local_key(gnupg_home: Path) -> Signer:
    """The local-only signing key in `gnupg_home`, generated on first use."""
    gnupg_home.mkdir(parents=True, exist_ok=True)
    gnupg_home.chmod(0o700)
    with gpg_env(gnupg_home) as env:
        found = _secret_keys(env, None)
        if not found:
            _gpg(
                [
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    LOCAL_KEY_UID,
                    "ed25519",
                    "sign",
                    "never",
                ],
                env,
                f"could not generate the local signing key in {gnupg_home}",
            )
            found = _secret_keys(env, None)
    if not found:
        raise SigningError(f"no signing key in {gnupg_home} after generating one; remove that folder and retry")
    return Signer(found[0], gnupg_home, local_only=True)


def signer_for(settings: Settings) -> Signer:
    """The key that signs fleet commits: a generated local-only key, or the configured one (aws)."""
    if settings.target == "local":
        return ensure_local_key(settings.gnupg_home)
    if not settings.signing_key:
        raise SigningError(
            "no signing key for the aws target; set PIPELINE_SIGNING_KEY to the fingerprint "
            "of a secret key in your GnuPG keyring"
        )
    with gpg_env(None) as env:
        found = _secret_keys(env, settings.signing_key)
    if len(found) != 1:
        problem = "is not a secret key" if not found else "matches more than one secret key"
        raise SigningError(
            f"PIPELINE_SIGNING_KEY '{settings.signing_key}' {problem} in your GnuPG keyring; "
            "set it to a full fingerprint from 'gpg --list-secret-keys'"
        )
    return Signer(found[0], None, local_only=False, passphrase=settings.signing_passphrase)


# git runs gpg.program without a shell or arguments: this stand-in adds loopback pinentry and
# hands gpg the passphrase through a pipe, so it is on no command line and in no file.
_LOOPBACK = """\
import os, sys
read, write = os.pipe()
os.write(write, os.environ.pop("{env}").encode() + b"\\n")
os.close(write)
os.set_inheritable(read, True)
gpg = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", str(read)]
os.execvp("gpg", gpg + sys.argv[1:])
"""


@contextmanager
def gpg_program(signer: Signer) -> Iterator[tuple[str, dict[str, str]]]:
    """The gpg.program for git to sign with, and the environment it needs."""
    if signer.passphrase is None:
        yield "gpg", {}
        return
    folder = Path(tempfile.mkdtemp(prefix="fleet-gpg-"))
    try:
        program = folder / "gpg-loopback"
        program.write_text(f"#!{sys.executable}\n" + _LOOPBACK.format(env=PASSPHRASE_ENV))
        program.chmod(0o700)
        yield str(program), {PASSPHRASE_ENV: signer.passphrase}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_public(signer: Signer) -> str:
    """The signer's public key, ASCII-armored."""
    with gpg_env(signer.gnupg_home) as env:
        armored = _gpg(["--armor", "--export", signer.fingerprint], env, "could not export the public key")
    if "BEGIN PGP PUBLIC KEY BLOCK" not in armored:
        raise SigningError(f"no public key {signer.fingerprint} to export; check the signing key")
    return armored


def verify_commit(repo_path: Path, rev: str, trusted_keys: Sequence[str]) -> str:
    """The fingerprint of the trusted key that signed `rev`; SigningError otherwise.

    As Flux does, only the trusted keys are known to the verifying gpg: a fresh home
    holds just them, so the user's keyring can never vouch for a commit.
    """
    if not trusted_keys:
        raise SigningError("the fleet trusts no keys (flux/system/keys/ is empty); add a public key there")
    with _trusting(trusted_keys) as env:
        result = process.run(
            [*_GIT_GPG, "-c", "gpg.minTrustLevel=undefined", "verify-commit", "--raw", rev],
            cwd=repo_path,
            env=env,
            check=False,
        )
    return _trusted_signer(rev, result)


def trusted_signers(repo_path: Path, revs: Sequence[str], trusted_keys: Sequence[str]) -> dict[str, str | None]:
    """Each commit's trusted signer (primary key fingerprint), '' when it is unsigned, None when no trusted key
    signed it. One git call for them all, judged as `verify_commit` judges one."""
    if not revs:
        return {}
    with _trusting(trusted_keys) as env:
        listed = process.run(
            [*_GIT_GPG, "log", "--no-walk=unsorted", "--format=%H%x00%G?%x00%GP", *revs], cwd=repo_path, env=env
        )
    found: dict[str, str | None] = {}
    for line in listed.stdout.splitlines():
        rev, status, primary = [*line.split("\0"), "", ""][:3]
        # G: good and valid; U: good from a key of unknown trust, which every key of a fresh home is.
        found[rev] = "" if status == "N" else primary if status in ("G", "U") and primary else None
    return found


# git verifying OpenPGP signatures through plain gpg, whatever the user's git config says.
_GIT_GPG = ("git", "-c", "gpg.format=openpgp", "-c", "gpg.program=gpg")


@contextmanager
def _trusting(trusted_keys: Sequence[str]) -> Iterator[dict[str, str]]:
    """The environment of a fresh GnuPG home that knows the trusted keys and nothing else, removed after."""
    home = Path(tempfile.mkdtemp(prefix="fleet-verify-"))
    try:
        with gpg_env(home) as env:
            if trusted_keys:
                _gpg(["--import"], env, "could not import the fleet's trusted keys", stdin="\n".join(trusted_keys))
            yield env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _trusted_signer(rev: str, result: process.Result) -> str:
    status = {
        line.split()[1]: line.split()[2:]
        for line in result.stderr.splitlines()
        if line.startswith("[GNUPG:] ") and len(line.split()) > 1
    }
    short = rev[:12]
    if not status:
        detail = result.stderr.strip().splitlines()[-1:] or ["no signature"]
        raise SigningError(f"commit {short} is not signed ({detail[0]}); only signed commits reach the fleet")
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        raise SigningError(
            f"commit {short} is signed by a key the fleet does not trust; "
            "sign with a key in flux/system/keys/ or add its public key there"
        )
    for bad, meaning in (("BADSIG", "does not match"), ("EXPKEYSIG", "uses an expired key")):
        if bad in status:
            raise SigningError(f"commit {short}: signature {meaning}; re-sign it with a trusted key")
    if "REVKEYSIG" in status:
        raise SigningError(f"commit {short} is signed by a revoked key; re-sign it with a trusted key")
    if result.returncode != 0 or "GOODSIG" not in status or "VALIDSIG" not in status:
        raise SigningError(f"commit {short}: signature not verified; re-sign it with a trusted key")
    # VALIDSIG ends with the primary key's fingerprint, which is what keys/ are named by.
    return status["VALIDSIG"][-1]


def _secret_keys(env: Mapping[str, str], wanted: str | None) -> list[str]:
    """Fingerprints of usable secret primary keys, optionally matching `wanted`."""
    argv = ["gpg", "--batch", "--no-tty", "--with-colons", "--list-secret-keys"]
    listing = process.run([*argv, "--", wanted] if wanted else argv, env=env, check=False)
    found: list[str] = []
    usable = False
    for fields in (line.split(":") for line in listing.stdout.splitlines()):
        if fields[0] == "sec":
            usable = fields[1] not in ("e", "r", "d")
            continue
        if fields[0] == "fpr" and usable:
            found.append(fields[9])
            usable = False  # later fpr lines belong to subkeys
        elif fields[0] == "ssb":
            usable = False
    return found


def _gpg(args: Sequence[str], env: Mapping[str, str], what: str, stdin: str | None = None) -> str:
    try:
        return process.run(["gpg", "--batch", "--no-tty", *args], env=env, stdin=stdin).stdout
    except CommandFailed as failed:
        raise SigningError(f"{what}: {failed}") from failed


@contextmanager
def _short_path(home: Path) -> Iterator[Path]:
    if len(str(home)) <= _MAX_HOME_LENGTH:
        yield home
        return
    link_dir = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    link = link_dir / "h"
    link.symlink_to(home.resolve(), target_is_directory=True)
    try:
        yield link
    finally:
        shutil.rmtree(link_dir)
