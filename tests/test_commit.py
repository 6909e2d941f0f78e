from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import config, fleet, git, management, signing
from pipeline.approve import approve_cluster
from pipeline.errors import BadInput, GitConflict, SigningError
from pipeline.model import Manifest, Manifests
from tests import fleet_calls
from tests.fixtures import fleet_git, fleet_refs
from tests.fleet_calls import commit, remove

TRAILERS = {"Spec-Fingerprint": "sha256:abc", "Pipeline-Run": "run-1"}


def manifests(name: str = "demo", **extra: str) -> Manifests:
    files = {
        f"clusters/{name}/cluster.yaml": f"kind: Cluster\nmetadata: {{name: {name}}}\n",
        f"clusters/{name}/kustomization.yaml": "resources: [cluster.yaml]\n",
        f"flux/clusters/{name}.yaml": f"kind: Kustomization\nspec: {{path: ./clusters/{name}}}\n",
        **extra,
    }
    return Manifests(name, tuple(Manifest(path, files[path]) for path in sorted(files)))


def test_commits_a_signed_branch_with_trailers(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    result = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    assert result.changed
    assert result.branch == "cluster/demo"
    assert result.signer == fleet_signer.fingerprint
    assert fleet_git(settings.fleet, "rev-parse", "cluster/demo").strip() == result.commit
    message = fleet_git(settings.fleet, "log", "-1", "--format=%B", "cluster/demo")
    assert message.startswith("cluster demo: create\n\n")
    assert message.rstrip().endswith("Pipeline-Run: run-1\nSpec-Fingerprint: sha256:abc")
    trailers = fleet_git(settings.fleet, "log", "-1", "--format=%(trailers:only,unfold)", "cluster/demo")
    assert trailers.split("\n")[:2] == ["Pipeline-Run: run-1", "Spec-Fingerprint: sha256:abc"]
    assert fleet_git(settings.fleet, "show", "cluster/demo:flux/clusters/demo.yaml").startswith("kind: Kustomization")
    keys = fleet_calls.trusted_keys(settings)
    assert signing.verify_commit(Path(settings.fleet), "cluster/demo", keys) == fleet_signer.fingerprint


def test_same_manifests_again_push_nothing(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    first = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    refs = fleet_refs(settings.fleet)
    again = commit(manifests(), settings, fleet_signer, {**TRAILERS, "Pipeline-Run": "run-2"}, "create")
    assert not again.changed
    assert again.commit == first.commit
    assert fleet_refs(settings.fleet) == refs


def test_content_already_on_main_commits_nothing(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    first = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    fleet_git(settings.fleet, "update-ref", "refs/heads/main", str(first.commit))
    fleet_git(settings.fleet, "update-ref", "-d", "refs/heads/cluster/demo")
    refs = fleet_refs(settings.fleet)
    again = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    assert (again.changed, again.commit) == (False, first.commit)
    assert fleet_refs(settings.fleet) == refs


def test_a_change_replaces_the_clusters_files(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    commit(manifests(**{"clusters/demo/old.yaml": "kind: Old\n"}), settings, fleet_signer, TRAILERS, "create")
    result = commit(manifests(), settings, fleet_signer, TRAILERS, "drop old")
    assert result.changed
    assert fleet_git(settings.fleet, "ls-tree", "-r", "--name-only", "cluster/demo").split() == [
        ".github/workflows/verify.yml",
        "README.md",
        "clusters/demo/cluster.yaml",
        "clusters/demo/kustomization.yaml",
        "fleet.yaml",
        "flux/clusters/demo.yaml",
        *sorted(management.files(fleet.TRUSTED_KEYS_REF, fleet.PLACEHOLDER_URL)),
        "flux/system/gitrepository.yaml",
        "flux/system/health.yaml",
        f"flux/system/keys/{fleet_signer.fingerprint}.asc",
        "flux/system/kustomization.yaml",
    ]
    assert fleet_git(settings.fleet, "rev-list", "--count", "main..cluster/demo").strip() == "2"


def test_an_untrusted_signer_is_refused_and_nothing_pushed(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    stranger = signing.ensure_local_key(tmp_path / "stranger")
    refs = fleet_refs(settings.fleet)
    with pytest.raises(SigningError, match="does not trust"):
        commit(manifests(), settings, stranger, TRAILERS, "create")
    assert fleet_refs(settings.fleet) == refs


def test_a_path_outside_the_cluster_is_refused(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    refs = fleet_refs(settings.fleet)
    bad = manifests(**{"flux/system/keys/evil.asc": "key"})
    with pytest.raises(BadInput, match=re.escape("flux/system/keys/evil.asc")):
        commit(bad, settings, fleet_signer, TRAILERS, "create")
    assert fleet_refs(settings.fleet) == refs


def test_a_multi_line_trailer_is_refused(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    with pytest.raises(BadInput, match="Pipeline-Run"):
        commit(manifests(), settings, fleet_signer, {"Pipeline-Run": "1\nSigned-off-by: x"}, "create")


def _main_moves_past_demo(settings: config.Settings, signer: signing.Signer) -> str:
    """Branch cluster/demo as made from main, then main moved on by approving cluster other; demo's head."""
    demo = commit(manifests(), settings, signer, TRAILERS, "create").commit
    commit(manifests("other"), settings, signer, TRAILERS, "create")
    approve_cluster("other", settings, signer)
    assert demo is not None
    return demo


def test_a_branch_main_moved_past_is_rebuilt_on_main(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    _main_moves_past_demo(settings, fleet_signer)
    main = fleet_git(settings.fleet, "rev-parse", "main").strip()
    result = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    assert result.changed
    assert fleet_git(settings.fleet, "rev-parse", "cluster/demo").strip() == result.commit
    assert fleet_git(settings.fleet, "log", "-1", "--format=%P", "cluster/demo").strip() == main
    changed = fleet_git(settings.fleet, "diff", "--name-only", "main", "cluster/demo").split()
    assert changed == [m.path for m in manifests().files]
    keys = fleet_calls.trusted_keys(settings)
    assert signing.verify_commit(Path(settings.fleet), "cluster/demo", keys) == fleet_signer.fingerprint
    refs = fleet_refs(settings.fleet)
    again = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    assert (again.changed, again.commit) == (False, result.commit)
    assert fleet_refs(settings.fleet) == refs


def test_a_rebuild_never_overwrites_a_branch_that_moved(
    settings: config.Settings, fleet_signer: signing.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _main_moves_past_demo(settings, fleet_signer)
    main = fleet_git(settings.fleet, "rev-parse", "main").strip()
    real_push = git.push

    def someone_moves_the_branch_first(checkout: git.Checkout, branch: str, lease: str | None = None) -> None:
        # Main itself: a plain fast-forward of the branch's new head would be accepted, a lease is not.
        fleet_git(settings.fleet, "update-ref", f"refs/heads/{branch}", main)
        real_push(checkout, branch, lease)

    monkeypatch.setattr(git, "push", someone_moves_the_branch_first)
    with pytest.raises(GitConflict, match="refused the push of cluster/demo: it moved"):
        commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    assert fleet_git(settings.fleet, "rev-parse", "cluster/demo").strip() == main


def test_a_branch_merged_into_main_commits_nothing(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    _main_moves_past_demo(settings, fleet_signer)
    assert approve_cluster("demo", settings, fleet_signer).how == "merge"
    refs = fleet_refs(settings.fleet)
    again = commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    assert (again.changed, again.commit) == (False, fleet_git(settings.fleet, "rev-parse", "main").strip())
    assert fleet_refs(settings.fleet) == refs


def test_a_removal_deletes_exactly_the_clusters_files(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    commit(manifests("other"), settings, fleet_signer, TRAILERS, "create")
    approve_cluster("demo", settings, fleet_signer)
    approve_cluster("other", settings, fleet_signer)

    result = remove("demo", settings, fleet_signer, TRAILERS, "delete")

    assert result.changed
    assert fleet_git(settings.fleet, "diff", "--name-status", "main", "cluster/demo").splitlines() == [
        f"D\t{m.path}" for m in manifests().files
    ]
    assert fleet_git(settings.fleet, "log", "-1", "--format=%s", "cluster/demo").strip() == "cluster demo: delete"
    keys = fleet_calls.trusted_keys(settings)
    assert signing.verify_commit(Path(settings.fleet), "cluster/demo", keys) == fleet_signer.fingerprint
    refs = fleet_refs(settings.fleet)
    again = remove("demo", settings, fleet_signer, TRAILERS, "delete")
    assert (again.changed, again.commit) == (False, result.commit)
    assert fleet_refs(settings.fleet) == refs


def test_removing_a_cluster_main_lacks_pushes_nothing(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    refs = fleet_refs(settings.fleet)
    result = remove("demo", settings, fleet_signer, TRAILERS, "delete")
    assert (result.changed, result.commit) == (False, fleet_git(settings.fleet, "rev-parse", "main").strip())
    assert fleet_refs(settings.fleet) == refs
