from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import config, fleet, flux_kustomize, founding, management, schemas, signing
from pipeline.cli import main
from pipeline.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, FleetFileInvalid, SigningError
from pipeline.model import Manifest, Manifests
from pipeline.verify import verify_fleet
from tests import fleet_calls
from tests.fixtures import commit_by_hand, fleet_git, fleet_refs, push_by_hand, race


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


def _init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    """`fleet init` through the CLI, in this process: its exit code, its --json object and what it said on stderr."""
    code = main(["fleet", "init", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _flux_source(remote: str | Path) -> dict[str, object]:
    source: dict[str, object] = yaml.safe_load(fleet_git(remote, "show", f"main:{fleet.GITREPOSITORY_FILE}"))
    return source


def test_init_founds_an_empty_remote_at_a_file_url_once(
    settings: config.Settings, signer: signing.Signer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)

    code, created, _ = _init(capsys, "--fleet", remote.as_uri())

    assert (code, created["created"]) == (0, True)
    assert fleet_git(remote, "rev-list", "main").split() == [created["commit"]]
    assert signing.verify_commit(remote, "main", (signing.export_public(signer),)) == signer.fingerprint
    assert fleet_git(remote, "ls-tree", "-r", "--name-only", "main").split() == sorted(
        fleet.initial_files("KEY", signer.fingerprint)
    )
    # Flux fetches over ssh or http(s) only, and its CRD refuses file://: a placeholder says so until --flux-url.
    assert _flux_source(remote)["spec"]["url"] == fleet.PLACEHOLDER_URL  # type: ignore[index]
    refs = fleet_refs(remote)

    code, adopted, err = _init(capsys, "--fleet", remote.as_uri())

    assert (code, adopted["created"], adopted["commit"]) == (0, False, created["commit"])
    assert fleet_refs(remote) == refs
    assert "error" not in err


def test_init_at_a_path_with_no_repository_creates_it_naming_the_flux_url(
    settings: config.Settings, signer: signing.Signer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = tmp_path / "not" / "yet" / "fleet.git"

    code, created, _ = _init(capsys, "--fleet", str(remote), "--flux-url", "ssh://git@github.com/acme/fleet.git")

    assert (code, created["created"], created["flux_url"]) == (0, True, "ssh://git@github.com/acme/fleet.git")
    assert fleet_git(remote, "rev-list", "main").split() == [created["commit"]]
    assert _flux_source(remote)["spec"]["url"] == "ssh://git@github.com/acme/fleet.git"  # type: ignore[index]
    assert [p.name for p in remote.parent.iterdir()] == ["fleet.git"]


def test_init_on_an_empty_bare_path_and_new_cluster_take_the_same_path(
    settings: config.Settings,
    signer: signing.Signer,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """new-cluster founds an empty remote through the very function `fleet init` uses; then init adopts it."""
    subprocess.run(["git", "init", "-q", "--bare", settings.fleet], check=True)
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", moto_endpoint)
    real = founding.found
    calls: list[founding.Founded] = []

    def found_then_stop(*args: Any) -> founding.Founded:
        calls.append(real(*args))
        raise KeyboardInterrupt  # stop the run here, before Terraform

    monkeypatch.setattr(founding, "found", found_then_stop)
    assert main(["new-cluster", "demo"]) == EXIT_INTERRUPTED
    monkeypatch.setattr(founding, "found", real)

    assert [(c.remote, c.created) for c in calls] == [(settings.fleet, True)]
    assert fleet_git(settings.fleet, "rev-list", "main").split() == [calls[0].commit]
    capsys.readouterr()
    code, adopted, _ = _init(capsys)
    assert (code, adopted["created"], adopted["commit"]) == (0, False, calls[0].commit)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ({"trunk": {"README.md": "# notes\n"}}, "holds refs/heads/trunk but no main branch, so no fleet; give --fleet"),
        ({"main": {"README.md": "# notes\n"}}, f"main has no {fleet.GITREPOSITORY_FILE} with trusted keys in"),
    ],
)
def test_a_remote_holding_something_else_is_refused_in_one_line_and_left_as_it_was(
    settings: config.Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: dict[str, dict[str, str]],
    said: str,
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    for branch, files in content.items():
        work = tmp_path / branch
        subprocess.run(["git", "init", "-q", "-b", branch, str(work)], check=True)
        for path, text in files.items():
            (work / path).write_text(text)
        commit_by_hand(work, "not a fleet", None)
        subprocess.run(["git", "push", "-q", str(remote), f"{branch}:{branch}"], cwd=work, check=True)
    refs = fleet_refs(remote)

    code, failed, err = _init(capsys, "--fleet", str(remote))

    assert code == EXIT_BAD_INPUT == failed["exit_code"]
    assert str(failed["error"]).startswith(f"{remote}") and said in str(failed["error"])
    assert [line for line in err.splitlines() if line.startswith("error:")] == [f"error: {failed['error']}"]
    assert fleet_refs(remote) == refs


@pytest.mark.parametrize(
    ("flag", "env", "named"),
    [
        (["--flux-url", "git@github.com:acme/fleet.git"], {}, "--flux-url 'git@github.com:acme/fleet.git' is not a"),
        (["--flux-url", "https://bot:s3cret@github.com/acme/fleet.git"], {}, "--flux-url carries credentials"),
        ([], {config.FLUX_URL_ENV: "file:///srv/fleet.git"}, "PIPELINE_FLUX_URL 'file:///srv/fleet.git' is not a"),
    ],
)
def test_a_flux_url_flux_cannot_fetch_is_refused_naming_where_it_came_from(
    settings: config.Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    flag: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    code, failed, _ = _init(capsys, *flag)

    assert code == EXIT_BAD_INPUT
    assert str(failed["error"]).startswith(named)
    assert "s3cret" not in str(failed["error"])
    assert not Path(settings.fleet).exists()


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:acme/fleet.git", "ssh://git@github.com/acme/fleet.git"),
        ("ssh://git@git.example.com:2222/acme/fleet.git", "ssh://git@git.example.com:2222/acme/fleet.git"),
        ("https://x-access-token:t0ken@github.com/acme/fleet.git", "https://github.com/acme/fleet.git"),
        ("https://github.com/acme/fleet.git", "https://github.com/acme/fleet.git"),
        ("file:///srv/fleet.git", fleet.PLACEHOLDER_URL),
        ("/srv/fleet.git", fleet.PLACEHOLDER_URL),
    ],
)
def test_the_flux_source_is_the_fleets_own_address_without_credentials(remote: str, url: str) -> None:
    assert founding.source_url(remote, fleet.PLACEHOLDER_URL) == url


def test_runs_of_fleet_init_started_together_on_one_empty_remote_end_with_one_fleet(
    settings: config.Settings, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    # Each run signs with a key of its own, made before the start: two first commits that cannot be the same.
    setup = (
        "import json, os, sys; from pathlib import Path; from pipeline import config, signing\n"
        "from pipeline.cli import main\n"
        "os.environ['PIPELINE_STATE_DIR'] = sys.argv[2]\n"
        "print(signing.signer_for(config.load_settings(os.environ, Path.cwd())).fingerprint)"
    )
    init = "raise SystemExit(main(['fleet', 'init', '--fleet', sys.argv[1], '--json']))"
    runs = race(setup, init, [[str(remote), str(tmp_path / name)] for name in ("one", "two")])

    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    keys = [run.stdout.split("\n", 1)[0] for run in runs]
    said = [json.loads(run.stdout.split("\n", 1)[1]) for run in runs]
    assert len(set(keys)) == 2
    assert sorted(bool(s["created"]) for s in said) == [False, True]
    assert {s["commit"] for s in said} == {fleet_git(remote, "rev-parse", "main").strip()}
    assert len(fleet_git(remote, "rev-list", "main").split()) == 1
    winner = keys[[s["created"] for s in said].index(True)]
    trusted = tuple(fleet_calls.trusted_keys(dataclasses.replace(settings, fleet=str(remote))))
    assert signing.verify_commit(remote, "main", trusted) == winner


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_root_kustomization_applies_flux_and_builds_as_flux_builds_it(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", settings.fleet, str(work)], check=True)
    files = [str(p.relative_to(work)) for p in (work / "flux").rglob("*") if p.is_file()]
    generated = flux_kustomize.generated(files, fleet.FLUX_DIR)
    assert generated is not None
    (work / "flux" / "kustomization.yaml").write_text(generated)
    built = subprocess.run(["kubectl", "kustomize", str(work / "flux")], capture_output=True, text=True, check=True)

    objects = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(built.stdout)}
    # One root: the Kustomization that `flux bootstrap --path=./flux` writes, from bootstrap's source, which
    # verifies signatures like the fleet's own; no other Kustomization applies ./flux.
    root = objects[("Kustomization", "flux-system")]
    assert root["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert root["metadata"]["namespace"] == "flux-system"
    assert root["spec"]["path"] == "./flux" and root["spec"]["prune"] is True
    assert root["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
    source = objects[("GitRepository", "flux-system")]
    assert source["spec"]["verify"] == {"mode": "HEAD", "secretRef": {"name": fleet.TRUSTED_KEYS_REF}}
    assert source["spec"]["url"] == fleet.PLACEHOLDER_URL  # a fleet at a path: Flux needs --flux-url
    assert [n for (kind, n), d in objects.items() if kind == "Kustomization" and d["spec"]["path"] == "./flux"] == [
        "flux-system"
    ]
    assert ("GitRepository", "fleet") in objects and ("Secret", fleet.TRUSTED_KEYS_REF) in objects


def test_verify_builds_the_whole_flux_tree_and_checks_the_root_against_its_crd(
    settings: config.Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    crds = schemas.load(settings)
    assert verify_fleet(settings, crds).findings == ()
    root = fleet_git(settings.fleet, "show", f"main:{management.BOOTSTRAP_SYNC}")
    push_by_hand(
        settings.fleet,
        tmp_path / "work",
        "cluster/twice",
        {
            # Another file under ./flux declaring the fleet's source again: each folder builds, the whole does not.
            "flux/extra/source.yaml": fleet_git(settings.fleet, "show", f"main:{fleet.GITREPOSITORY_FILE}"),
            management.BOOTSTRAP_SYNC: root.replace("prune: true", "prune: sometimes"),
        },
        fleet_signer,
    )

    findings = verify_fleet(settings, crds, "cluster/twice").findings

    assert any(f.startswith("flux: kubectl kustomize fails: ") and "GitRepository" in f for f in findings), findings
    assert any(f.startswith(f"{management.BOOTSTRAP_SYNC}: Kustomization/flux-system .spec.prune") for f in findings), (
        findings
    )


def test_flux_generates_a_kustomization_like_its_controller() -> None:
    paths = [
        "flux/system/kustomization.yaml",
        "flux/system/gitrepository.yaml",
        "flux/system/keys/A.asc",
        "flux/clusters/b.yaml",
        "flux/clusters/a.yml",
        "flux/clusters/notes.txt",
        "flux/management/operator/kustomization.yaml",
        "flux/management/operator/helm.yaml",
        "flux/Root.yaml",
        "clusters/demo/cluster.yaml",
    ]
    assert flux_kustomize.generated(paths, "flux/") == (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        "- ./Root.yaml\n- ./clusters/a.yml\n- ./clusters/b.yaml\n- ./management/operator\n- ./system\n"
    )
    assert flux_kustomize.generated(paths, "flux/system/") is None
    assert flux_kustomize.generated(paths, "nowhere/").endswith("resources: []\n")  # type: ignore[union-attr]


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
