from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline import config, fleet, signing
from pipeline.approve import approve
from pipeline.commit import commit
from pipeline.errors import BadInput, SigningError
from tests.test_commit import TRAILERS, manifests


def _git(remote: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", remote, *args], capture_output=True, text=True, check=True).stdout


def _refs(settings: config.Settings) -> str:
    return _git(settings.fleet, "for-each-ref", "--format=%(refname) %(objectname)")


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


def _verify_main(settings: config.Settings) -> str:
    return signing.verify_commit(Path(settings.fleet), "main", fleet.trusted_keys(settings))


def test_fast_forwards_main_to_the_signed_branch(settings: config.Settings, signer: signing.Signer) -> None:
    head = commit(manifests(), settings, signer, TRAILERS, "create").commit
    approval = approve("demo", settings, signer)
    assert (approval.main, approval.how, approval.signer) == (head, "fast-forward", signer.fingerprint)
    assert _git(settings.fleet, "rev-parse", "main").strip() == head
    assert _verify_main(settings) == signer.fingerprint
    assert fleet.cluster_manifests(settings) == (manifests(),)


def test_signs_a_merge_when_main_moved(settings: config.Settings, signer: signing.Signer) -> None:
    demo = commit(manifests(), settings, signer, TRAILERS, "create").commit
    commit(manifests("other"), settings, signer, TRAILERS, "create")
    approve("other", settings, signer)
    approval = approve("demo", settings, signer)
    assert approval.how == "merge"
    main = _git(settings.fleet, "rev-parse", "main").strip()
    assert approval.main == main
    assert _git(settings.fleet, "log", "-1", "--format=%P", "main").split()[1] == demo
    assert _verify_main(settings) == signer.fingerprint
    assert [m.cluster for m in fleet.cluster_manifests(settings)] == ["demo", "other"]


def test_an_approved_branch_is_already_merged(settings: config.Settings, signer: signing.Signer) -> None:
    commit(manifests(), settings, signer, TRAILERS, "create")
    first = approve("demo", settings, signer)
    refs = _refs(settings)
    again = approve("demo", settings, signer)
    assert (again.main, again.how) == (first.main, "already merged")
    assert _refs(settings) == refs


def test_a_missing_branch_is_an_error(settings: config.Settings, signer: signing.Signer) -> None:
    with pytest.raises(BadInput, match=r"no review branch cluster/nope .*run new-cluster nope first"):
        approve("nope", settings, signer)


def test_a_branch_signed_by_an_untrusted_key_is_refused(
    settings: config.Settings, signer: signing.Signer, tmp_path: Path
) -> None:
    stranger = signing.ensure_local_key(tmp_path / "stranger")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "-b", "main", settings.fleet, str(work)], check=True)
    (work / "clusters" / "demo").mkdir(parents=True)
    (work / "clusters" / "demo" / "cluster.yaml").write_text("kind: Cluster\n")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    with signing.gpg_env(stranger.gnupg_home) as env:
        subprocess.run(
            ["git", "-c", "gpg.program=gpg", "commit", "-qm", "sneak", f"-S{stranger.fingerprint}"],
            cwd=work,
            check=True,
            env={**os.environ, **env},
        )
    subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/cluster/demo"], cwd=work, check=True)
    refs = _refs(settings)
    with pytest.raises(SigningError, match="does not trust"):
        approve("demo", settings, signer)
    assert _refs(settings) == refs


def test_a_branch_changing_other_files_is_refused(
    settings: config.Settings, signer: signing.Signer, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "-b", "main", settings.fleet, str(work)], check=True)
    (work / "flux" / "system" / "keys" / "extra.asc").write_text("not really a key\n")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    with signing.gpg_env(signer.gnupg_home) as env:
        subprocess.run(
            ["git", "-c", "gpg.program=gpg", "commit", "-qm", "add key", f"-S{signer.fingerprint}"],
            cwd=work,
            check=True,
            env={**os.environ, **env},
        )
    subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/cluster/demo"], cwd=work, check=True)
    refs = _refs(settings)
    with pytest.raises(BadInput, match="changes files outside cluster demo"):
        approve("demo", settings, signer)
    assert _refs(settings) == refs
