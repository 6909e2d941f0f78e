from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from pipeline import aws, config, local_endpoint, local_tls
from pipeline.errors import LocalEndpointError
from pipeline.model import AwsAccess
from tests.fixtures import free_port, race


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.Settings:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    return config.load_settings(os.environ, tmp_path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_reuses_the_server_and_down_leaves_nothing_running(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    assert local_endpoint.status(settings) is None

    first = local_endpoint.up(settings)
    try:
        assert first.running and first.pid is not None
        assert local_endpoint.up(settings) == first
        assert local_endpoint.status(settings) == first
    finally:
        assert local_endpoint.down(settings) is True

    assert first.pid is not None and not _running(first.pid)
    assert not local_endpoint.answers(first.url)
    assert local_endpoint.status(settings) is None
    assert local_endpoint.down(settings) is False


def test_the_endpoint_serves_tls_under_a_ca_of_its_own_that_its_clients_trust(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    endpoint = local_endpoint.up(settings)
    try:
        assert endpoint.url.startswith("https://127.0.0.1:") and endpoint.ca_bundle is not None
        access = local_endpoint.access(endpoint, "us-east-1")
        assert dict(access.env)[AwsAccess.CA_BUNDLE] == endpoint.ca_bundle
        assert aws.caller_identity(access).isdigit()
        # Verified, not merely encrypted: under another CA the same server does not count as answering.
        other = local_tls.ensure(tmp_path / "other-ca")
        assert not local_endpoint.answers(endpoint.url, str(other.ca), patience=0)
        key = local_tls.Files.under(settings.state_dir / "local-endpoint-tls").key
        assert key.stat().st_mode & 0o077 == 0
    finally:
        local_endpoint.down(settings)


def test_ensure_uses_the_configured_endpoint_with_dummy_credentials(tmp_path, monkeypatch, moto_endpoint):
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", moto_endpoint)

    access = local_endpoint.ensure(_settings(tmp_path, monkeypatch), "eu-central-1")

    assert access.endpoint == moto_endpoint
    assert dict(access.env) == {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_REGION": "eu-central-1",
    }
    assert not (tmp_path / "state" / "local-endpoint.json").exists()


def test_a_configured_endpoint_that_does_not_answer_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", f"http://127.0.0.1:{free_port()}")

    with pytest.raises(LocalEndpointError, match=re.escape("PIPELINE_AWS_ENDPOINT=http://127.0.0.1:")):
        local_endpoint.ensure(_settings(tmp_path, monkeypatch), "us-east-1")


def test_runs_started_together_share_one_server(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch)
    setup = (
        "import os, sys; from pathlib import Path; from pipeline import config, local_endpoint\n"
        "settings = config.load_settings(os.environ, Path(sys.argv[1]))"
    )
    runs = race(setup, "print(local_endpoint.up(settings).url)", [[str(tmp_path)]] * 3)
    urls = {run.stdout.strip() for run in runs}
    servers = [
        pid
        for url in urls
        for pid in subprocess.run(
            ["pgrep", "-f", f"{local_endpoint.SERVER} -H 127.0.0.1 -p {url.rsplit(':', 1)[1]} "],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
    ]
    try:
        assert [run.returncode for run in runs] == [0, 0, 0]
        assert len(urls) == 1
        assert len(servers) == 1
    finally:
        local_endpoint.down(settings)
        for pid in servers:  # a second server would mean the lock failed; never leave it running
            subprocess.run(["kill", pid], check=False)
