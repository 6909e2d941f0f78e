"""Shared fixtures: real servers on free loopback ports, isolated git and gpg homes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CRDS = REPO_ROOT.parent / "shared" / "crds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port for the whole session, stopped at the end."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"moto server did not start: {log.read()!r}") from None
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
