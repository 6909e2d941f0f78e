from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline import config, fleet, signing
from pipeline.approve import approve
from pipeline.commit import commit
from pipeline.errors import BadInput, SigningError
from tests.fixtures import fleet_git, fleet_refs
from tests.test_commit import TRAILERS, manifests


def _verify_main(settings: config.Settings) -> str:
    return signing.verify_commit(Path(settings.fleet), "main", fleet.trusted_keys(settings))


def test_fast_forwards_main_to_the_signed_branch(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    head = commit(manifests(), settings, fleet_signer, TRAILERS, "create").commit
    approval = approve("demo", settings, fleet_signer)
    assert (approval.main, approval.how, approval.signer) == (head, "fast-forward", fleet_signer.fingerprint)
    assert fleet_git(settings.fleet, "rev-parse", "main").strip() == head
    assert _verify_main(settings) == fleet_signer.fingerprint
    assert fleet.cluster_manifests(settings) == (manifests(),)


def test_signs_a_merge_when_main_moved(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    demo = commit(manifests(), settings, fleet_signer, TRAILERS, "create").commit
    commit(manifests("other"), settings, fleet_signer, TRAILERS, "create")
    approve("other", settings, fleet_signer)
    approval = approve("demo", settings, fleet_signer)
    assert approval.how == "merge"
    main = fleet_git(settings.fleet, "rev-parse", "main").strip()
    assert approval.main == main
    assert fleet_git(settings.fleet, "log", "-1", "--format=%P", "main").split()[1] == demo
    assert _verify_main(settings) == fleet_signer.fingerprint
    assert [m.cluster for m in fleet.cluster_manifests(settings)] == ["demo", "other"]


def test_an_approved_branch_is_already_merged(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    first = approve("demo", settings, fleet_signer)
    refs = fleet_refs(settings.fleet)
    again = approve("demo", settings, fleet_signer)
    assert (again.main, again.how) == (first.main, "already merged")
    assert fleet_refs(settings.fleet) == refs


def test_a_missing_branch_is_an_error(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    with pytest.raises(BadInput, match=r"no review branch cluster/nope .*run new-cluster nope first"):
        approve("nope", settings, fleet_signer)


def test_a_branch_signed_by_an_untrusted_key_is_refused(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
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
    refs = fleet_refs(settings.fleet)
    with pytest.raises(SigningError, match="does not trust"):
        approve("demo", settings, fleet_signer)
    assert fleet_refs(settings.fleet) == refs


def test_a_branch_changing_other_files_is_refused(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "-b", "main", settings.fleet, str(work)], check=True)
    (work / "flux" / "system" / "keys" / "extra.asc").write_text("not really a key\n")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    with signing.gpg_env(fleet_signer.gnupg_home) as env:
        subprocess.run(
            ["git", "-c", "gpg.program=gpg", "commit", "-qm", "add key", f"-S{fleet_signer.fingerprint}"],
            cwd=work,
            check=True,
            env={**os.environ, **env},
        )
    subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/cluster/demo"], cwd=work, check=True)
    refs = fleet_refs(settings.fleet)
    with pytest.raises(BadInput, match="changes files outside cluster demo"):
        approve("demo", settings, fleet_signer)
    assert fleet_refs(settings.fleet) == refs
