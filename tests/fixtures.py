"""Shared fixtures: real servers on free loopback ports, isolated git and gpg homes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pipeline import fleet, local_endpoint, local_tls, signing
from pipeline.config import Settings, load_settings
from pipeline.model import AwsAccess
from pipeline.signing import Signer

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CRDS = REPO_ROOT.parent / "shared" / "crds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def local_tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_tls.Files]:
    """The session's moto servers' certificate, its CA trusted as a user of PIPELINE_AWS_ENDPOINT would."""
    files = local_tls.ensure(tmp_path_factory.mktemp("endpoint-tls"))
    before = os.environ.get(AwsAccess.CA_BUNDLE)
    os.environ[AwsAccess.CA_BUNDLE] = str(files.ca)
    yield files
    if before is None:
        os.environ.pop(AwsAccess.CA_BUNDLE, None)
    else:
        os.environ[AwsAccess.CA_BUNDLE] = before


@pytest.fixture(scope="session")
def moto_endpoint(local_tls_files: local_tls.Files) -> Iterator[str]:
    """A moto server on a free loopback port for the whole session, stopped at the end."""
    with moto_server(local_tls_files) as url:
        yield url


@pytest.fixture
def own_moto_endpoint(local_tls_files: local_tls.Files) -> Iterator[str]:
    """A moto server for one test: an AWS account that no other test has touched (IAM is account-wide)."""
    with moto_server(local_tls_files) as url:
        yield url


@contextlib.contextmanager
def moto_server(tls: local_tls.Files | None) -> Iterator[str]:
    """The local endpoint's own server process, over TLS with tls (plain HTTP without)."""
    port = free_port()
    log = tempfile.TemporaryFile()
    args = local_endpoint.server_args(port, tls) if tls else ["-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen([sys.executable, "-m", local_endpoint.SERVER, *args], stdout=log, stderr=subprocess.STDOUT)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not local_endpoint.answers(url, str(tls.ca) if tls else None, timeout=1, patience=0):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"moto server did not start: {log.read()!r}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(autouse=True)
def isolated_homes(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, plugin_cache: Path
) -> Iterator[Path]:
    """Git and gpg never see the developer's own config or keys; the gpg-agent is stopped after."""
    home = tmp_path_factory.mktemp("home")
    # gpg-agent's socket path must stay short (sun_path is 108 bytes).
    gnupg = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    gnupg.chmod(0o700)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Test\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "PIPELINE_AWS_ENDPOINT",
        "PIPELINE_STATE_DIR",
        "PIPELINE_FLEET",
        "GITHUB_ACTIONS",
        "PIPELINE_SIGNING_KEY",
        "PIPELINE_STATE_BUCKET",
        "PIPELINE_TARGET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPELINE_PLUGIN_CACHE", str(plugin_cache))
    monkeypatch.setenv("PIPELINE_CRDS_DIR", os.environ.get("PIPELINE_CRDS_DIR", str(SHARED_CRDS)))
    yield home
    subprocess.run(
        ["gpgconf", "--kill", "all"],
        env={**os.environ, "GNUPGHOME": str(gnupg)},
        check=False,
        capture_output=True,
    )
    shutil.rmtree(gnupg, ignore_errors=True)


@pytest.fixture(scope="session")
def plugin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Terraform plugin cache for the session, as a machine would share between clusters."""
    return tmp_path_factory.mktemp("tf-plugin-cache")


def fleet_git(fleet: str | Path, *args: str) -> str:
    """Run git against a (bare) fleet repo and return its stdout."""
    return subprocess.run(["git", "--git-dir", str(fleet), *args], capture_output=True, text=True, check=True).stdout


def fleet_refs(fleet: str | Path) -> str:
    return fleet_git(fleet, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Local-target settings with their own state dir and a fleet at tmp_path/fleet.git."""
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_FLEET", str(tmp_path / "fleet.git"))
    return load_settings(os.environ, tmp_path)


@pytest.fixture
def signer(settings: Settings) -> Signer:
    return signing.signer_for(settings)


@pytest.fixture
def fleet_signer(settings: Settings, signer: Signer) -> Signer:
    """The signer of a fleet that exists, created with its layout."""
    fleet.ensure_fleet(settings, signer)
    return signer


@pytest.fixture
def second_signer() -> Iterator[Signer]:
    """Another local key in its own short GnuPG home (not trusted by any fleet); its agent stopped after."""
    with another_local_key() as signer:
        yield signer


@contextlib.contextmanager
def another_local_key() -> Iterator[Signer]:
    """A new local key in its own short GnuPG home, removed after with its agent stopped."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    try:
        yield signing.ensure_local_key(home)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def commit_by_hand(repo: Path, message: str, signer: Signer | None) -> str:
    """Commit everything in `repo`'s work tree as a person would, signed by `signer` (None: unsigned)."""
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    sign = ["--no-gpg-sign"] if signer is None else [f"-S{signer.fingerprint}"]
    with signing.gpg_env(None if signer is None else signer.gnupg_home) as env:
        subprocess.run(
            ["git", "-c", "gpg.program=gpg", "commit", "-qm", message, *sign],
            cwd=repo,
            check=True,
            env={**os.environ, **env},
        )
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    return head.stdout.strip()


def push_by_hand(fleet: str, work: Path, branch: str, files: dict[str, str], signer: Signer | None) -> str:
    """A commit on top of the fleet's main writing `files`, pushed as `branch`; its sha."""
    subprocess.run(["git", "clone", "-q", "-b", "main", fleet, str(work)], check=True)
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    head = commit_by_hand(work, f"change {branch}", signer)
    subprocess.run(["git", "push", "-q", "origin", f"HEAD:refs/heads/{branch}"], cwd=work, check=True)
    return head


def race(setup: str, action: str, argvs: Sequence[Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
    """One Python child per argv runs `setup`, then all run `action` at the same instant; their results.

    Children start at different times; a shared start time a second ahead is what makes them race.
    In the code, sys.argv[1:] is the child's argv.
    """
    start = time.time() + 1.0
    code = f"{setup}\nimport time as _time\n_time.sleep(max(0.0, {start!r} - _time.time()))\n{action}\n"
    children = [
        (
            argv,
            subprocess.Popen(
                [sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for argv in argvs
    ]
    results = []
    for argv, child in children:
        out, err = child.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(list(argv), child.returncode, out, err))
    return results
