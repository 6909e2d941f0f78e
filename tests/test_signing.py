from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, signing
from pipeline.errors import SigningError
from tests.fixtures import commit_by_hand, race


def _settings(tmp_path: Path, **env: str) -> config.Settings:
    return config.load_settings({**os.environ, "PIPELINE_STATE_DIR": str(tmp_path / "state"), **env}, tmp_path)


def _agents_for(homes: tuple[str, ...]) -> list[str]:
    """Live gpg-agents serving any of `homes`: each agent's command line names its home."""
    listing = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True)
    return [
        line
        for line in listing.stdout.splitlines()
        if "gpg-agent" in line and not line.startswith("Z") and any(home in line for home in homes)
    ]


def _repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def _commit(repo: Path, signer: signing.Signer | None, name: str = "a.txt") -> str:
    (repo / name).write_text(name)
    return commit_by_hand(repo, name, signer)


@pytest.fixture
def local_signer(tmp_path: Path) -> signing.Signer:
    return signing.ensure_local_key(tmp_path / "keys")


def test_local_key_is_generated_once_then_reused(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    first = signing.ensure_local_key(home)
    second = signing.ensure_local_key(home)
    assert first == second
    assert first.local_only
    assert first.gnupg_home == home
    assert len(first.fingerprint) == 40
    assert home.stat().st_mode & 0o777 == 0o700
    listing = subprocess.run(
        ["gpg", "--homedir", str(home), "--with-colons", "--list-secret-keys"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.count("\nsec:") + listing.startswith("sec:") == 1
    assert "LOCAL ONLY" in listing
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def test_a_home_too_long_for_agent_sockets_still_works(tmp_path: Path) -> None:
    home = tmp_path / ("long-" * 20) / "gnupg"
    assert len(str(home)) > 108
    signer = signing.ensure_local_key(home)
    assert signing.ensure_local_key(home) == signer
    assert "BEGIN PGP PUBLIC KEY BLOCK" in signing.export_public(signer)
    links = [link for link in Path("/tmp").glob("gpg*/h") if link.is_symlink()]
    assert all(link.resolve() != home.resolve() for link in links)


@pytest.mark.parametrize("length", [86, 87])
def test_a_home_at_the_socket_path_bound_gets_an_agent(tmp_path: Path, length: int) -> None:
    # 87 characters put S.gpg-agent.browser at 107 bytes, one more than gpg binds.
    home = tmp_path / "h"
    home = Path(str(home) + "x" * (length - len(str(home))))
    assert len(str(home)) == length
    signer = signing.ensure_local_key(home)
    assert "BEGIN PGP PUBLIC KEY BLOCK" in signing.export_public(signer)


def test_signer_for_local_target_uses_the_state_dir_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    signer = signing.signer_for(settings)
    assert signer.gnupg_home == settings.gnupg_home
    assert signer.local_only


def test_signer_for_aws_needs_pipeline_signing_key(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="PIPELINE_SIGNING_KEY"):
        signing.signer_for(_settings(tmp_path, PIPELINE_TARGET="aws"))


def test_signer_for_aws_refuses_a_key_not_in_the_keyring(tmp_path: Path) -> None:
    settings = _settings(tmp_path, PIPELINE_TARGET="aws", PIPELINE_SIGNING_KEY="0" * 40)
    with pytest.raises(SigningError, match="PIPELINE_SIGNING_KEY '0000"):
        signing.signer_for(settings)


def test_signer_for_aws_uses_the_ambient_keyring(tmp_path: Path) -> None:
    ambient = Path(os.environ["GNUPGHOME"])
    generated = signing.ensure_local_key(ambient)
    settings = _settings(tmp_path, PIPELINE_TARGET="aws", PIPELINE_SIGNING_KEY=generated.fingerprint[-16:])
    signer = signing.signer_for(settings)
    assert signer == signing.Signer(generated.fingerprint, None, local_only=False)


def test_verify_commit_returns_the_trusted_signer(tmp_path: Path, local_signer: signing.Signer) -> None:
    repo = _repo(tmp_path / "repo")
    rev = _commit(repo, local_signer)
    assert signing.verify_commit(repo, rev, [signing.export_public(local_signer)]) == local_signer.fingerprint


def test_verify_commit_detects_an_unsigned_commit(tmp_path: Path, local_signer: signing.Signer) -> None:
    repo = _repo(tmp_path / "repo")
    rev = _commit(repo, None)
    with pytest.raises(SigningError, match="is not signed"):
        signing.verify_commit(repo, rev, [signing.export_public(local_signer)])


def test_verify_commit_refuses_an_untrusted_key(tmp_path: Path, local_signer: signing.Signer) -> None:
    stranger = signing.ensure_local_key(tmp_path / "stranger")
    repo = _repo(tmp_path / "repo")
    rev = _commit(repo, stranger)
    with pytest.raises(SigningError, match="does not trust"):
        signing.verify_commit(repo, rev, [signing.export_public(local_signer)])


def test_verify_commit_ignores_keys_in_the_users_keyring(tmp_path: Path) -> None:
    # The user's keyring holds the signer's key, yet the fleet trusts only another one.
    mine = signing.ensure_local_key(Path(os.environ["GNUPGHOME"]))
    trusted = signing.ensure_local_key(tmp_path / "trusted")
    repo = _repo(tmp_path / "repo")
    rev = _commit(repo, mine)
    with pytest.raises(SigningError, match="does not trust"):
        signing.verify_commit(repo, rev, [signing.export_public(trusted)])


def test_verify_commit_needs_trusted_keys(tmp_path: Path, local_signer: signing.Signer) -> None:
    repo = _repo(tmp_path / "repo")
    rev = _commit(repo, local_signer)
    with pytest.raises(SigningError, match="trusts no keys"):
        signing.verify_commit(repo, rev, [])


def test_no_gpg_agent_is_left_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this test's homes: other workers run gpg at the same time under the same prefixes.
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recorded(*args: Any, **kwargs: Any) -> str:
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recorded)
    signer = signing.ensure_local_key(tmp_path / "gnupg")
    long_home = signing.ensure_local_key(tmp_path / ("long-" * 20) / "gnupg")
    repo = _repo(tmp_path / "repo")
    rev = _commit(repo, signer)
    signing.verify_commit(repo, rev, [signing.export_public(signer), signing.export_public(long_home)])
    assert made  # the verification home, and the short links to the long home
    assert _agents_for((str(tmp_path), *made)) == []


_SIGN_SETUP = """
import sys
from pathlib import Path
from pipeline import process, signing
home, fpr = Path(sys.argv[1]), sys.argv[2]
"""
_SIGN_LOOP = """
for _ in range(20):
    with signing.gpg_env(home) as env:
        process.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "-u", fpr,
                     "--armor", "--detach-sign"], stdin="fleet", env=env)
"""


def test_two_processes_signing_with_one_local_key_never_stop_each_others_agent(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    try:
        signer = signing.ensure_local_key(home)
        runs = race(_SIGN_SETUP, _SIGN_LOOP, [[str(home), signer.fingerprint]] * 2)
        assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
