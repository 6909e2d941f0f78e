from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import pytest

from pipeline.cli import main
from pipeline.config import load_settings
from pipeline.errors import SchemaChecksumMismatch, SchemasMissing
from pipeline.schemas import PINNED, Schemas, fetch, load, strict
from tests.fixtures import free_port
from tests.fixtures_render import schemas_from


class Mirror(NamedTuple):
    url: str
    requests: list[str]


def serve(directory: Path) -> Iterator[Mirror]:
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Mirror(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def crds_dir() -> Path:
    return Path(os.environ["PIPELINE_CRDS_DIR"])


@pytest.fixture
def mirror(crds_dir: Path) -> Iterator[Mirror]:
    yield from serve(crds_dir)


@pytest.fixture
def tampered_mirror(crds_dir: Path, tmp_path: Path) -> Iterator[Mirror]:
    copy = tmp_path / "mirror"
    shutil.copytree(crds_dir, copy)
    victim = copy / PINNED[-1].cache_path
    victim.write_bytes(victim.read_bytes() + b"# changed\n")
    yield from serve(copy)


@pytest.fixture
def shared_schemas(crds_dir: Path) -> Schemas:
    return schemas_from(str(crds_dir))


def test_directory_yields_served_versions_only(shared_schemas):
    assert ("cluster.x-k8s.io/v1beta2", "Cluster") in shared_schemas.served
    assert ("cluster.x-k8s.io/v1beta1", "Cluster") in shared_schemas.served  # deprecated, still served
    assert ("infrastructure.cluster.x-k8s.io/v1beta2", "AWSMachineTemplate") in shared_schemas.served
    assert ("infrastructure.cluster.x-k8s.io/v1beta1", "AWSCluster") in shared_schemas.not_served
    assert ("infrastructure.cluster.x-k8s.io/v1beta1", "AWSCluster") not in shared_schemas.served
    assert "controlplane.cluster.x-k8s.io" in shared_schemas.groups


def test_every_converted_schema_is_valid_json_schema(shared_schemas):
    for schema in shared_schemas.served.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_strict_rejects_unknown_fields_unless_the_schema_keeps_them():
    schema = strict(
        {
            "type": "object",
            "properties": {
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "open": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )
    validator = jsonschema.Draft202012Validator(schema)

    assert validator.is_valid({"open": {"b": 1}, "map": {"any": "x"}})
    assert not validator.is_valid({"closed": {"b": "x"}})
    assert not validator.is_valid({"extra": 1})
    assert not validator.is_valid({"map": {"any": 1}})


def test_strict_handles_int_or_string_and_nullable():
    validator = jsonschema.Draft202012Validator(
        strict(
            {
                "type": "object",
                "properties": {
                    "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "bare": {"x-kubernetes-int-or-string": True},
                    "list": {"type": "array", "items": {"type": "string"}, "nullable": True},
                },
            }
        )
    )

    assert validator.is_valid({"port": 80, "bare": "50%", "list": None})
    assert validator.is_valid({"port": "http", "bare": 3, "list": ["a"]})
    assert not validator.is_valid({"bare": 1.5})
    assert not validator.is_valid({"list": "a"})


def test_fetch_verifies_and_caches_the_pinned_files_once(mirror, tmp_path):
    cache = tmp_path / "cache"

    paths = fetch(cache, base_url=mirror.url)

    assert [p.relative_to(cache).as_posix() for p in paths] == [pin.cache_path for pin in PINNED]
    for pin, path in zip(PINNED, paths, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == pin.sha256
    assert len(mirror.requests) == len(PINNED)
    assert not [p for p in cache.rglob(".*")]  # no temporary files left behind

    fetch(cache, base_url=mirror.url)

    assert len(mirror.requests) == len(PINNED)


def test_fetch_refuses_a_checksum_mismatch_and_caches_nothing(tampered_mirror, tmp_path):
    cache = tmp_path / "cache"

    with pytest.raises(SchemaChecksumMismatch, match="nothing was cached"):
        fetch(cache, base_url=tampered_mirror.url)

    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_fetch_replaces_a_corrupted_cache_file(mirror, tmp_path):
    cache = tmp_path / "cache"
    fetch(cache, base_url=mirror.url)
    corrupted = cache / PINNED[0].cache_path
    corrupted.write_text("garbage")

    fetch(cache, base_url=mirror.url)

    assert hashlib.sha256(corrupted.read_bytes()).hexdigest() == PINNED[0].sha256


def test_load_reads_the_configured_directory(tmp_path):
    settings = load_settings(os.environ, tmp_path)

    schemas = load(settings)

    assert ("controlplane.cluster.x-k8s.io/v1beta2", "KubeadmControlPlane") in schemas.served


def test_load_downloads_once_then_works_offline(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_CRDS_DIR")
    settings = load_settings(os.environ, tmp_path)

    online = load(dataclasses.replace(settings, crds_mirror=mirror.url))
    offline = load(dataclasses.replace(settings, crds_mirror=f"http://127.0.0.1:{free_port()}"))

    assert online.served.keys() == offline.served.keys()
    assert ("cluster.x-k8s.io/v1beta2", "MachineDeployment") in offline.served


def test_without_directory_network_or_cache_the_message_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_CRDS_DIR")
    settings = load_settings(os.environ, tmp_path)

    with pytest.raises(SchemasMissing) as raised:
        load(dataclasses.replace(settings, crds_mirror=f"http://127.0.0.1:{free_port()}"))

    message = str(raised.value)
    assert "PIPELINE_CRDS_DIR" in message
    assert str(settings.crds_cache) in message
    assert "python -m pipeline schemas fetch" in message


def test_a_configured_directory_that_is_missing_or_empty_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CRDS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SchemasMissing, match="PIPELINE_CRDS_DIR"):
        load(load_settings(os.environ, tmp_path))

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PIPELINE_CRDS_DIR", str(tmp_path / "empty"))
    with pytest.raises(SchemasMissing, match="no CustomResourceDefinitions"):
        load(load_settings(os.environ, tmp_path))


def test_the_schemas_fetch_command_fills_the_cache_validation_then_uses(mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PIPELINE_CRDS_DIR")
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_CRDS_MIRROR", mirror.url)
    monkeypatch.chdir(tmp_path)

    assert main(["schemas", "fetch"]) == 0

    printed = capsys.readouterr().out
    assert "kubeadmcontrolplanes.yaml" in printed
    monkeypatch.setenv("PIPELINE_CRDS_MIRROR", f"http://127.0.0.1:{free_port()}")
    offline = load(load_settings(os.environ, tmp_path))
    assert ("infrastructure.cluster.x-k8s.io/v1beta2", "AWSCluster") in offline.served
