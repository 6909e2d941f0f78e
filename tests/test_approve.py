from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import config, fleet, git, signing
from pipeline.approve import approve, approve_cluster, cluster_review, keys_review, merge
from pipeline.errors import BadInput, GitConflict, PushRejected, SigningError
from tests import fleet_calls
from tests.fixtures import REPO_ROOT, fleet_git, fleet_refs, push_by_hand
from tests.fleet_calls import commit
from tests.test_commit import TRAILERS, manifests


def _verify_main(settings: config.Settings) -> str:
    return signing.verify_commit(Path(settings.fleet), "main", fleet_calls.trusted_keys(settings))


def _rev(settings: config.Settings, ref: str) -> str:
    return fleet_git(settings.fleet, "rev-parse", ref).strip()


def _clusters_on_main(settings: config.Settings) -> list[str]:
    return [m.cluster for m in fleet_calls.cluster_manifests(settings)]


def _two_branches_from_main(settings: config.Settings, signer: signing.Signer) -> tuple[str, str]:
    """Review branches cluster/demo and cluster/other, both made from the same main; their heads."""
    demo = commit(manifests(), settings, signer, TRAILERS, "create").commit
    other = commit(manifests("other"), settings, signer, TRAILERS, "create").commit
    assert demo is not None
    assert other is not None
    return demo, other


def test_fast_forwards_main_to_the_signed_branch(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    head = commit(manifests(), settings, fleet_signer, TRAILERS, "create").commit
    approval = approve_cluster("demo", settings, fleet_signer)
    assert (approval.main, approval.how, approval.signer) == (head, "fast-forward", fleet_signer.fingerprint)
    assert _rev(settings, "main") == head
    assert _verify_main(settings) == fleet_signer.fingerprint
    assert fleet_calls.cluster_manifests(settings) == (manifests(),)


def test_signs_a_merge_when_main_moved(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    demo, _ = _two_branches_from_main(settings, fleet_signer)
    approve_cluster("other", settings, fleet_signer)
    approval = approve(cluster_review("demo"), settings, fleet_signer)
    assert approval.how == "merge"
    assert approval.main == _rev(settings, "main")
    assert fleet_git(settings.fleet, "log", "-1", "--format=%P", "main").split()[1] == demo
    assert _verify_main(settings) == fleet_signer.fingerprint
    assert _clusters_on_main(settings) == ["demo", "other"]


def test_an_approved_branch_is_already_merged(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    first = approve_cluster("demo", settings, fleet_signer)
    refs = fleet_refs(settings.fleet)
    again = approve_cluster("demo", settings, fleet_signer)
    assert (again.main, again.how) == (first.main, "already merged")
    assert fleet_refs(settings.fleet) == refs


def test_a_missing_branch_is_an_error(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    with pytest.raises(BadInput, match=r"no review branch cluster/nope .*run new-cluster nope first"):
        approve_cluster("nope", settings, fleet_signer)


def test_a_branch_signed_by_an_untrusted_key_is_refused(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    stranger = signing.ensure_local_key(tmp_path / "stranger")
    push_by_hand(
        settings.fleet, tmp_path / "work", "cluster/demo", {"clusters/demo/cluster.yaml": "kind: Cluster\n"}, stranger
    )
    refs = fleet_refs(settings.fleet)
    with pytest.raises(SigningError, match="does not trust"):
        approve_cluster("demo", settings, fleet_signer)
    assert fleet_refs(settings.fleet) == refs


def test_a_cluster_branch_changing_other_files_is_refused(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    files = {"flux/system/keys/extra.asc": "not really a key\n"}
    push_by_hand(settings.fleet, tmp_path / "work", "cluster/demo", files, fleet_signer)
    refs = fleet_refs(settings.fleet)
    with pytest.raises(BadInput, match=r"cluster/demo changes files outside cluster demo \(flux/system/keys/extra"):
        approve_cluster("demo", settings, fleet_signer)
    assert fleet_refs(settings.fleet) == refs


def _new_key_file(tmp_path: Path) -> tuple[signing.Signer, dict[str, str]]:
    key = signing.ensure_local_key(tmp_path / "new-key")
    return key, {f"{fleet.KEYS_DIR}{key.fingerprint}.asc": signing.export_public(key)}


def test_a_signed_key_rotation_becomes_main(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    _, files = _new_key_file(tmp_path)
    head = push_by_hand(settings.fleet, tmp_path / "work", "keys/rotation", files, fleet_signer)
    approval = approve(keys_review(), settings, fleet_signer)
    assert (approval.main, approval.how, approval.signer) == (head, "fast-forward", fleet_signer.fingerprint)
    assert len(fleet_calls.trusted_keys(settings)) == 2


def test_a_key_cannot_vouch_for_its_own_addition(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    new_key, files = _new_key_file(tmp_path)
    push_by_hand(settings.fleet, tmp_path / "work", "keys/rotation", files, new_key)
    refs = fleet_refs(settings.fleet)
    with pytest.raises(SigningError, match="does not trust"):
        approve(keys_review(), settings, fleet_signer)
    assert fleet_refs(settings.fleet) == refs


def test_a_key_rotation_touching_a_cluster_is_refused(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    _, files = _new_key_file(tmp_path)
    files["clusters/demo/cluster.yaml"] = "kind: Cluster\n"
    push_by_hand(settings.fleet, tmp_path / "work", "keys/rotation", files, fleet_signer)
    refs = fleet_refs(settings.fleet)
    with pytest.raises(BadInput, match=r"keys/rotation changes files outside the trusted keys \(clusters/demo/"):
        approve(keys_review(), settings, fleet_signer)
    assert fleet_refs(settings.fleet) == refs


def test_the_keys_review_owns_only_the_keys_and_their_kustomization() -> None:
    owns = keys_review().owns
    assert owns("flux/system/keys/ABC.asc")
    assert owns("flux/system/kustomization.yaml")
    assert not owns("flux/system/keys/nested/ABC.asc")
    assert not owns("flux/system/keys/ABC.txt")
    assert not owns("flux/system/gitrepository.yaml")
    assert not owns("flux/clusters/demo.yaml")


_APPROVER = """
import os, sys, time
from pathlib import Path
from pipeline.approve import approve_cluster
from pipeline.config import load_settings
from pipeline.signing import Signer

name, fingerprint, home, ready, go = sys.argv[1:]
settings = load_settings(os.environ, Path.cwd())
Path(ready).touch()
deadline = time.monotonic() + 30
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("the start signal never came")
    time.sleep(0.002)
print(approve_cluster(name, settings, Signer(fingerprint, Path(home), local_only=True)).how)
"""


def test_concurrent_approvals_of_two_clusters_both_land(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    demo, other = _two_branches_from_main(settings, fleet_signer)
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [
                *(sys.executable, "-c", _APPROVER, name),
                *(fleet_signer.fingerprint, str(fleet_signer.gnupg_home), str(tmp_path / f"ready-{name}"), str(go)),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("demo", "other")
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{name}").exists() for name in ("demo", "other")):
            assert time.monotonic() < deadline, "the approvers did not start"
            time.sleep(0.01)
        go.touch()
        outcomes = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert [child.returncode for child in children] == [0, 0], outcomes
    # Whoever pushed first fast-forwarded; the other found main moved and merged onto it.
    assert sorted(out.strip() for out, _ in outcomes) == ["fast-forward", "merge"]
    for head in (demo, other):
        fleet_git(settings.fleet, "merge-base", "--is-ancestor", head, "main")
    assert _verify_main(settings) == fleet_signer.fingerprint
    assert _clusters_on_main(settings) == ["demo", "other"]


def test_an_approval_redone_when_main_moves_before_its_push(
    settings: config.Settings, fleet_signer: signing.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo, other = _two_branches_from_main(settings, fleet_signer)
    before = _rev(settings, "main")
    real_push = git.push
    pushes: list[str] = []

    def other_lands_first(checkout: git.Checkout, branch: str, lease: str | None = None) -> None:
        pushes.append(branch)
        if len(pushes) == 1:
            fleet_git(settings.fleet, "update-ref", "refs/heads/main", other, before)
        real_push(checkout, branch, lease)

    monkeypatch.setattr(git, "push", other_lands_first)
    approval = approve_cluster("demo", settings, fleet_signer)
    assert pushes == ["main", "main"]
    assert approval.how == "merge"
    assert approval.main == _rev(settings, "main")
    assert fleet_git(settings.fleet, "log", "-1", "--format=%P", "main").split() == [other, demo]
    assert _verify_main(settings) == fleet_signer.fingerprint
    assert _clusters_on_main(settings) == ["demo", "other"]


def test_an_approval_gives_up_after_bounded_backoff(
    settings: config.Settings, fleet_signer: signing.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(manifests(), settings, fleet_signer, TRAILERS, "create")
    refs = fleet_refs(settings.fleet)
    pauses: list[float] = []

    def always_moved(checkout: git.Checkout, branch: str, lease: str | None = None) -> None:
        raise PushRejected(f"{branch} moved")

    monkeypatch.setattr(git, "push", always_moved)
    monkeypatch.setattr("pipeline.approve.time.sleep", pauses.append)
    with pytest.raises(
        GitConflict, match=r"while cluster/demo was approved \(12 attempts\); approve cluster/demo again"
    ):
        approve_cluster("demo", settings, fleet_signer)
    assert len(pauses) == 11
    for pause, step in zip(pauses, (0.1, 0.2, 0.4, 0.8, 1.6, *[2.0] * 6), strict=True):
        assert step / 2 <= pause <= step
    assert fleet_refs(settings.fleet) == refs


def test_merge_makes_main_the_approved_head(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    head = commit(manifests(), settings, fleet_signer, TRAILERS, "create").commit
    assert head is not None
    approval = merge(cluster_review("demo"), settings, head)
    assert (approval.main, approval.how, approval.signer) == (head, "fast-forward", fleet_signer.fingerprint)
    assert _rev(settings, "main") == head
    assert _verify_main(settings) == fleet_signer.fingerprint
    refs = fleet_refs(settings.fleet)
    again = merge(cluster_review("demo"), settings, head)
    assert (again.main, again.how) == (head, "already merged")
    assert fleet_refs(settings.fleet) == refs


def test_merge_refuses_a_head_that_moved_since_approval(
    settings: config.Settings, fleet_signer: signing.Signer
) -> None:
    approved = commit(manifests(), settings, fleet_signer, TRAILERS, "create").commit
    assert approved is not None
    commit(manifests(**{"clusters/demo/extra.yaml": "kind: Extra\n"}), settings, fleet_signer, TRAILERS, "more")
    head = _rev(settings, "cluster/demo")
    refs = fleet_refs(settings.fleet)
    with pytest.raises(
        GitConflict,
        match=rf"cluster/demo moved since it was approved \(approved {approved[:12]}, head {head[:12]}\); "
        "review the new head",
    ):
        merge(cluster_review("demo"), settings, approved)
    assert fleet_refs(settings.fleet) == refs


def test_merge_refuses_when_main_moved(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    demo, _ = _two_branches_from_main(settings, fleet_signer)
    merge(cluster_review("other"), settings, _rev(settings, "cluster/other"))
    refs = fleet_refs(settings.fleet)
    with pytest.raises(GitConflict, match="main moved since cluster/demo was made; run new-cluster demo to rebase it"):
        merge(cluster_review("demo"), settings, demo)
    assert fleet_refs(settings.fleet) == refs


def test_merge_refuses_when_main_moves_during_the_push(
    settings: config.Settings, fleet_signer: signing.Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo, other = _two_branches_from_main(settings, fleet_signer)
    real_push = git.push

    def other_lands_first(checkout: git.Checkout, branch: str, lease: str | None = None) -> None:
        fleet_git(settings.fleet, "update-ref", "refs/heads/main", other)
        real_push(checkout, branch, lease)

    monkeypatch.setattr(git, "push", other_lands_first)
    with pytest.raises(GitConflict, match="main moved since cluster/demo was made"):
        merge(cluster_review("demo"), settings, demo)
    assert _rev(settings, "main") == other


@pytest.mark.parametrize(("key", "refusal"), [("stranger", "does not trust"), (None, "is not signed")])
def test_merge_refuses_a_head_main_does_not_trust(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path, key: str | None, refusal: str
) -> None:
    signer = None if key is None else signing.ensure_local_key(tmp_path / key)
    files = {"clusters/demo/cluster.yaml": "kind: Cluster\n"}
    head = push_by_hand(settings.fleet, tmp_path / "work", "cluster/demo", files, signer)
    refs = fleet_refs(settings.fleet)
    with pytest.raises(SigningError, match=refusal):
        merge(cluster_review("demo"), settings, head)
    assert fleet_refs(settings.fleet) == refs


def test_merge_wants_the_full_approved_commit(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    head = commit(manifests(), settings, fleet_signer, TRAILERS, "create").commit
    assert head is not None
    with pytest.raises(BadInput, match="not a full commit id"):
        merge(cluster_review("demo"), settings, head[:12])
