from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from pipeline import config, fleet, signing
from pipeline.commit import commit
from pipeline.errors import BadInput, SigningError
from pipeline.model import Manifest, Manifests

TRAILERS = {"Spec-Fingerprint": "sha256:abc", "Pipeline-Run": "run-1"}


def _git(remote: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", remote, *args], capture_output=True, text=True, check=True).stdout


def _refs(settings: config.Settings) -> str:
    return _git(settings.fleet, "for-each-ref", "--format=%(refname) %(objectname)")


def manifests(name: str = "demo", **extra: str) -> Manifests:
    files = {
        f"clusters/{name}/cluster.yaml": f"kind: Cluster\nmetadata: {{name: {name}}}\n",
        f"clusters/{name}/kustomization.yaml": "resources: [cluster.yaml]\n",
        f"flux/clusters/{name}.yaml": f"kind: Kustomization\nspec: {{path: ./clusters/{name}}}\n",
        **extra,
    }
    return Manifests(name, tuple(Manifest(path, files[path]) for path in sorted(files)))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.Settings:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_FLEET", str(tmp_path / "fleet.git"))
    return config.load_settings(os.environ, tmp_path)


@pytest.fixture
def signer(settings: config.Settings) -> signing.Signer:
    signer = signing.signer_for(settings)
    fleet.ensure_fleet(settings, signer)
    return signer


def test_commits_a_signed_branch_with_trailers(settings: config.Settings, signer: signing.Signer) -> None:
    result = commit(manifests(), settings, signer, TRAILERS, "create")
    assert result.changed
    assert result.branch == "cluster/demo"
    assert result.signer == signer.fingerprint
    assert _git(settings.fleet, "rev-parse", "cluster/demo").strip() == result.commit
    message = _git(settings.fleet, "log", "-1", "--format=%B", "cluster/demo")
    assert message.startswith("cluster demo: create\n\n")
    assert message.rstrip().endswith("Pipeline-Run: run-1\nSpec-Fingerprint: sha256:abc")
    trailers = _git(settings.fleet, "log", "-1", "--format=%(trailers:only,unfold)", "cluster/demo")
    assert trailers.split("\n")[:2] == ["Pipeline-Run: run-1", "Spec-Fingerprint: sha256:abc"]
    assert _git(settings.fleet, "show", "cluster/demo:flux/clusters/demo.yaml").startswith("kind: Kustomization")
    keys = fleet.trusted_keys(settings)
    assert signing.verify_commit(Path(settings.fleet), "cluster/demo", keys) == signer.fingerprint


def test_same_manifests_again_push_nothing(settings: config.Settings, signer: signing.Signer) -> None:
    first = commit(manifests(), settings, signer, TRAILERS, "create")
    refs = _refs(settings)
    again = commit(manifests(), settings, signer, {**TRAILERS, "Pipeline-Run": "run-2"}, "create")
    assert not again.changed
    assert again.commit == first.commit
    assert _refs(settings) == refs


def test_content_already_on_main_commits_nothing(settings: config.Settings, signer: signing.Signer) -> None:
    first = commit(manifests(), settings, signer, TRAILERS, "create")
    _git(settings.fleet, "update-ref", "refs/heads/main", str(first.commit))
    _git(settings.fleet, "update-ref", "-d", "refs/heads/cluster/demo")
    refs = _refs(settings)
    again = commit(manifests(), settings, signer, TRAILERS, "create")
    assert (again.changed, again.commit) == (False, first.commit)
    assert _refs(settings) == refs


def test_a_change_replaces_the_clusters_files(settings: config.Settings, signer: signing.Signer) -> None:
    commit(manifests(**{"clusters/demo/old.yaml": "kind: Old\n"}), settings, signer, TRAILERS, "create")
    result = commit(manifests(), settings, signer, TRAILERS, "drop old")
    assert result.changed
    assert _git(settings.fleet, "ls-tree", "-r", "--name-only", "cluster/demo").split() == [
        "README.md",
        "clusters/demo/cluster.yaml",
        "clusters/demo/kustomization.yaml",
        "flux/clusters/demo.yaml",
        "flux/system/gitrepository.yaml",
        f"flux/system/keys/{signer.fingerprint}.asc",
        "flux/system/kustomization.yaml",
    ]
    assert _git(settings.fleet, "rev-list", "--count", "main..cluster/demo").strip() == "2"


def test_an_untrusted_signer_is_refused_and_nothing_pushed(
    settings: config.Settings, signer: signing.Signer, tmp_path: Path
) -> None:
    stranger = signing.ensure_local_key(tmp_path / "stranger")
    refs = _refs(settings)
    with pytest.raises(SigningError, match="does not trust"):
        commit(manifests(), settings, stranger, TRAILERS, "create")
    assert _refs(settings) == refs


def test_a_path_outside_the_cluster_is_refused(settings: config.Settings, signer: signing.Signer) -> None:
    refs = _refs(settings)
    bad = manifests(**{"flux/system/keys/evil.asc": "key"})
    with pytest.raises(BadInput, match=re.escape("flux/system/keys/evil.asc")):
        commit(bad, settings, signer, TRAILERS, "create")
    assert _refs(settings) == refs


def test_a_multi_line_trailer_is_refused(settings: config.Settings, signer: signing.Signer) -> None:
    with pytest.raises(BadInput, match="Pipeline-Run"):
        commit(manifests(), settings, signer, {"Pipeline-Run": "1\nSigned-off-by: x"}, "create")
