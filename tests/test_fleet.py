from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline import config, fleet, signing
from pipeline.errors import FleetFileInvalid, SigningError
from pipeline.model import Manifest, Manifests
from tests import fleet_calls
from tests.fixtures import commit_by_hand, fleet_git, race


def test_creates_the_layout_with_a_signed_main(settings: config.Settings, signer: signing.Signer) -> None:
    fleet.ensure_fleet(settings, signer)
    remote = Path(settings.fleet)
    assert fleet_git(remote, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert fleet_git(remote, "ls-tree", "-r", "--name-only", "main").split() == [
        ".github/workflows/verify.yml",
        "README.md",
        "fleet.yaml",
        "flux/flux-system/gotk-components.yaml",
        "flux/flux-system/gotk-sync.yaml",
        "flux/flux-system/kustomization.yaml",
        "flux/management/kustomization.yaml",
        "flux/management/kustomizations.yaml",
        "flux/management/operator/cert-manager.yaml",
        "flux/management/operator/cluster-api-operator.yaml",
        "flux/management/operator/kustomization.yaml",
        "flux/management/providers/kustomization.yaml",
        "flux/management/providers/namespaces.yaml",
        "flux/management/providers/providers.yaml",
        "flux/system/gitrepository.yaml",
        "flux/system/health.yaml",
        f"flux/system/keys/{signer.fingerprint}.asc",
        "flux/system/kustomization.yaml",
    ]
    source = yaml.safe_load(fleet_git(remote, "show", "main:flux/system/gitrepository.yaml"))
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert source["metadata"] == {"name": "fleet", "namespace": "flux-system"}
    assert source["spec"]["ref"] == {"branch": "main"}
    assert source["spec"]["verify"] == {"mode": "HEAD", "secretRef": {"name": "fleet-signing-keys"}}
    keys = fleet_calls.trusted_keys(settings)
    assert keys == (signing.export_public(signer),)
    assert signing.verify_commit(remote, "main", keys) == signer.fingerprint
    assert [p.name for p in remote.parent.iterdir() if p.name.startswith(".fleet.git")] == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_flux_system_builds_with_kustomize(settings: config.Settings, signer: signing.Signer, tmp_path: Path) -> None:
    fleet.ensure_fleet(settings, signer)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", settings.fleet, str(work)], check=True)
    built = subprocess.run(
        ["kubectl", "kustomize", str(work / "flux" / "system")], capture_output=True, text=True, check=True
    ).stdout
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(built)}
    secret = objects["Secret"]
    assert secret["metadata"] == {"name": "fleet-signing-keys", "namespace": "flux-system"}
    assert list(secret["data"]) == [f"{signer.fingerprint}.asc"]
    assert objects["GitRepository"]["spec"]["verify"]["secretRef"]["name"] == "fleet-signing-keys"


def test_an_existing_fleet_is_left_alone(settings: config.Settings, signer: signing.Signer) -> None:
    fleet.ensure_fleet(settings, signer)
    before = fleet_git(Path(settings.fleet), "rev-parse", "main")
    fleet.ensure_fleet(settings, signing.ensure_local_key(Path(settings.state_dir) / "other"))
    assert fleet_git(Path(settings.fleet), "rev-parse", "main") == before


def test_a_url_fleet_is_assumed_to_exist(settings: config.Settings, signer: signing.Signer) -> None:
    remote = config.load_settings({**os.environ, "PIPELINE_FLEET": "https://git.example.invalid/fleet.git"}, Path.cwd())
    fleet.ensure_fleet(remote, signer)


def test_a_failed_creation_leaves_nothing(
    settings: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir(mode=0o700)
    ghost = signing.Signer("0" * 40, tmp_path / "empty", local_only=True)
    monkeypatch.setattr(fleet, "export_public", lambda signer: "no key")
    with pytest.raises(SigningError):
        fleet.ensure_fleet(settings, ghost)
    assert not Path(settings.fleet).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fleet.git")] == []


def test_cluster_manifests_reads_each_cluster(
    settings: config.Settings, signer: signing.Signer, tmp_path: Path
) -> None:
    fleet.ensure_fleet(settings, signer)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", settings.fleet, str(work)], check=True)
    files = {
        "clusters/demo/cluster.yaml": "kind: Cluster\n",
        "clusters/demo/kustomization.yaml": "resources: [cluster.yaml]\n",
        "flux/clusters/demo.yaml": "kind: Kustomization\n",
        "clusters/bare/cluster.yaml": "kind: Cluster\n",
    }
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run(["git", "commit", "-qm", "clusters"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True)
    assert fleet_calls.cluster_manifests(settings) == (
        Manifests("bare", (Manifest("clusters/bare/cluster.yaml", "kind: Cluster\n"),)),
        Manifests(
            "demo",
            (
                Manifest("clusters/demo/cluster.yaml", "kind: Cluster\n"),
                Manifest("clusters/demo/kustomization.yaml", "resources: [cluster.yaml]\n"),
                Manifest("flux/clusters/demo.yaml", "kind: Kustomization\n"),
            ),
        ),
    )


def test_runs_creating_the_fleet_together_leave_one_signed_fleet(
    settings: config.Settings, signer: signing.Signer
) -> None:
    setup = (
        "import os, sys; from pathlib import Path; from pipeline import config, fleet, signing\n"
        "settings = config.load_settings(os.environ, Path(sys.argv[1]))\n"
        "signer = signing.signer_for(settings)"
    )
    runs = race(setup, "fleet.ensure_fleet(settings, signer)", [[str(Path(settings.fleet).parent)]] * 3)
    assert [run.returncode for run in runs] == [0, 0, 0], [run.stderr for run in runs]
    remote = Path(settings.fleet)
    assert [p.name for p in remote.parent.iterdir() if p.name.startswith(".fleet.git")] == []
    assert signing.verify_commit(remote, "main", fleet_calls.trusted_keys(settings)) == signer.fingerprint


def test_a_cidr_is_claimed_once_and_a_cluster_keeps_one_claim(
    settings: config.Settings, fleet_signer: signing.Signer
) -> None:
    assert fleet_calls.claim_cidr(settings, "10.20.0.0/16", "alpha") == "alpha"
    assert fleet_calls.claim_cidr(settings, "10.20.0.0/16", "beta") == "alpha"
    assert fleet_calls.claim_cidr(settings, "10.21.0.0/16", "beta") == "beta"
    assert fleet_calls.cidr_claims(settings) == {"10.20.0.0/16": "alpha", "10.21.0.0/16": "beta"}

    assert fleet_calls.claim_cidr(settings, "10.22.0.0/16", "alpha") == "alpha"
    assert fleet_calls.cidr_claims(settings) == {"10.21.0.0/16": "beta", "10.22.0.0/16": "alpha"}
    fleet_calls.release_cidrs(settings, "alpha")
    assert fleet_calls.cidr_claims(settings) == {"10.21.0.0/16": "beta"}
    assert "refs/fleet/cidr/10.21.0.0-16" in fleet_git(settings.fleet, "for-each-ref")


def test_runs_claiming_one_cidr_at_the_same_moment_get_one_winner(
    settings: config.Settings, fleet_signer: signing.Signer
) -> None:
    setup = (
        "import os, sys; from pathlib import Path; from pipeline import config, fleet; from tests import fleet_calls\n"
        "settings = config.load_settings(os.environ, Path(sys.argv[1]))"
    )
    parent = str(Path(settings.fleet).parent)
    runs = race(
        setup,
        "print(fleet_calls.claim_cidr(settings, '10.20.0.0/16', sys.argv[2]))",
        [[parent, name] for name in ("one", "two", "three")],
    )
    holders = {run.stdout.strip() for run in runs}
    assert [run.returncode for run in runs] == [0, 0, 0]
    assert len(holders) == 1
    assert fleet_calls.cidr_claims(settings) == {"10.20.0.0/16": holders.pop()}


def test_a_new_local_fleet_admits_this_machine_as_its_management_cluster(settings, fleet_signer):
    with fleet.session(settings) as checkout:
        assert fleet.management_cidrs(checkout) == fleet.LOCAL_MANAGEMENT_CIDRS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "fleet.yaml: no managementCluster.egressCIDRs; list the management cluster's egress addresses"),
        ("managementCluster:\n  egressCIDRs: []\n", "fleet.yaml: no managementCluster.egressCIDRs; list"),
        ("managementCluster: 10.0.0.0/8\n", "fleet.yaml: no managementCluster.egressCIDRs; list"),
        (
            "managementCluster:\n  egressCIDRs: [10.0.0.0/33]\n",
            "fleet.yaml managementCluster.egressCIDRs[0]: '10.0.0.0/33' is not an IPv4 CIDR",
        ),
        (
            "managementCluster:\n  egressCIDRs: [0.0.0.0/0]\n",
            "fleet.yaml managementCluster.egressCIDRs[0]: 0.0.0.0/0 is the whole internet",
        ),
    ],
)
def test_fleet_settings_without_sound_management_cidrs_are_refused_naming_the_field(
    settings, fleet_signer, tmp_path, text, message
):
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", settings.fleet, str(work)], check=True)
    if text is None:
        (work / "fleet.yaml").unlink()
    else:
        (work / "fleet.yaml").write_text(text)
    commit_by_hand(work, "fleet settings", fleet_signer)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True)
    with fleet.session(settings) as checkout, pytest.raises(FleetFileInvalid) as caught:
        fleet.management_cidrs(checkout)
    assert str(caught.value).startswith(message)
