from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping

import pytest
import yaml

from pipeline import fleet, git, management
from pipeline.commands import verify as verify_command
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.errors import BadInput
from pipeline.render import render
from pipeline.report import Reporter
from pipeline.schemas import Schemas
from pipeline.signing import Signer, export_public
from pipeline.verify import verify_fleet
from tests.fixtures import fleet_git, fleet_refs
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec, schemas_from


@pytest.fixture
def schemas() -> Schemas:
    return schemas_from(os.environ["PIPELINE_CRDS_DIR"])


def cluster(name: str, cidr: str) -> dict[str, str]:
    manifests = render(
        sample_spec(name=name, cidr=cidr), sample_outputs(cidr=cidr), PROJECT_ROOT / "templates", MANAGEMENT_CIDRS
    )
    return {m.path: m.content for m in manifests.files}


def push_signed(
    settings: Settings, signer: Signer, files: Mapping[str, str], branch: str = fleet.MAIN, drop: tuple[str, ...] = ()
) -> str:
    """A signed commit on `branch` (from main) changing `files`, pushed without review."""
    with git.clone(settings.fleet) as checkout:
        git.switch(checkout, branch, git.head_of(checkout, branch) or git.upstream(fleet.MAIN))
        git.delete_files(checkout, drop)
        git.write_files(checkout, files)
        git.stage_all(checkout)
        head = git.commit(checkout, f"test: change {branch}\n", signer)
        git.push(checkout, branch)
    return head


def test_a_fresh_fleet_verifies(settings: Settings, fleet_signer: Signer, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_command.run("main", settings, Reporter()) == 0

    head = fleet_git(settings.fleet, "rev-parse", "main").strip()
    assert (
        capsys.readouterr().out == f"fleet verified: main at {head} signed by {fleet_signer.fingerprint}, 0 clusters\n"
    )


def test_clusters_that_flux_would_apply_verify(settings: Settings, fleet_signer: Signer, schemas: Schemas) -> None:
    push_signed(settings, fleet_signer, {**cluster("alpha", "10.30.0.0/16"), **cluster("beta", "10.40.0.0/16")})

    result = verify_fleet(settings, schemas)

    assert result.findings == ()
    assert (result.clusters, result.signer) == (("alpha", "beta"), fleet_signer.fingerprint)


def test_an_invalid_manifest_is_a_finding_naming_its_file(
    settings: Settings, fleet_signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    files = cluster("demo", "10.20.0.0/16")
    docs = list(yaml.safe_load_all(files["clusters/demo/awscluster.yaml"]))
    docs[0]["spec"]["network"]["vpc"]["cidr"] = "10.20.0.0/16"
    files["clusters/demo/awscluster.yaml"] = yaml.safe_dump_all(docs)
    push_signed(settings, fleet_signer, files)

    assert verify_command.run("main", settings, Reporter()) == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "clusters/demo/awscluster.yaml: AWSCluster/demo .spec.network.vpc.cidr: unknown field",
        "1 finding",
    ]


def test_an_unsigned_head_is_a_finding(settings: Settings, fleet_signer: Signer, schemas: Schemas) -> None:
    main = fleet_git(settings.fleet, "rev-parse", "main").strip()
    unsigned = fleet_git(settings.fleet, "commit-tree", f"{main}^{{tree}}", "-p", main, "-m", "unsigned").strip()
    fleet_git(settings.fleet, "update-ref", "refs/heads/main", unsigned)

    result = verify_fleet(settings, schemas)

    assert result.signer is None
    assert len(result.findings) == 1
    assert result.findings[0].startswith(f"commit {unsigned[:12]} is not signed")


def test_a_branch_cannot_vouch_for_itself_with_a_key_it_adds(
    settings: Settings, fleet_signer: Signer, second_signer: Signer, schemas: Schemas
) -> None:
    key_file = f"keys/{second_signer.fingerprint}.asc"
    both = [f"keys/{fleet_signer.fingerprint}.asc", key_file]
    files = {
        f"flux/system/{key_file}": export_public(second_signer),
        fleet.SYSTEM_KUSTOMIZATION: fleet.system_kustomization(both),
    }
    push_signed(settings, second_signer, files, branch="keys/rotation")

    result = verify_fleet(settings, schemas, "keys/rotation")

    assert len(result.findings) == 1
    assert "signed by a key the fleet does not trust" in result.findings[0]
    assert verify_fleet(settings, schemas).findings == ()  # main itself is untouched


def test_overlapping_cidrs_are_reported_once(settings: Settings, fleet_signer: Signer, schemas: Schemas) -> None:
    push_signed(settings, fleet_signer, {**cluster("alpha", "10.20.0.0/16"), **cluster("beta", "10.20.128.0/17")})

    findings = verify_fleet(settings, schemas).findings

    assert findings == (
        "clusters/beta: VPC CIDR 10.20.128.0/17 overlaps cluster 'alpha' (10.20.0.0/16); choose a free range",
    )


def test_flux_kustomizations_and_cluster_folders_match(
    settings: Settings, fleet_signer: Signer, schemas: Schemas
) -> None:
    alpha = cluster("alpha", "10.30.0.0/16")
    ghost = cluster("ghost", "10.50.0.0/16")["flux/clusters/ghost.yaml"]
    moved = alpha["flux/clusters/alpha.yaml"].replace('path: "./clusters/alpha"', "path: ./clusters/beta")
    files = {**alpha, "flux/clusters/alpha.yaml": moved, "flux/clusters/ghost.yaml": ghost}
    push_signed(settings, fleet_signer, files)

    findings = verify_fleet(settings, schemas).findings

    assert findings == (
        "flux/clusters/alpha.yaml: spec.path is './clusters/beta'; it must be ./clusters/alpha",
        "flux/clusters/ghost.yaml: no cluster folder clusters/ghost/ for it to apply",
    )


def test_a_cluster_without_flux_kustomization_and_a_broken_flux_system(
    settings: Settings, fleet_signer: Signer, schemas: Schemas
) -> None:
    files = cluster("alpha", "10.30.0.0/16")
    del files["flux/clusters/alpha.yaml"]
    files[fleet.SYSTEM_KUSTOMIZATION] = fleet.system_kustomization(["keys/missing.asc"])
    push_signed(settings, fleet_signer, files)

    findings = verify_fleet(settings, schemas).findings

    assert findings[0].startswith("flux/system: kubectl kustomize fails: ")
    assert "missing.asc" in findings[0]
    assert findings[1:] == ("clusters/alpha: no Flux Kustomization flux/clusters/alpha.yaml applies it",)


def push_pull_head(settings: Settings, signer: Signer, number: int, files: Mapping[str, str]) -> str:
    """A signed commit on main pushed as GitHub keeps a pull request's head: refs/pull/N/head, no branch."""
    with git.clone(settings.fleet) as checkout:
        git.switch(checkout, "contribution", git.upstream(fleet.MAIN))
        git.write_files(checkout, files)
        git.stage_all(checkout)
        head = git.commit(checkout, f"test: pull request {number}\n", signer)
        subprocess.run(
            ["git", "push", "-q", "origin", f"{head}:refs/pull/{number}/head"], cwd=checkout.path, check=True
        )
    return head


@pytest.mark.parametrize("ref", ["pr/none", "refs/pull/9/head", "deadbeef", "0" * 40, "refs/x:refs/heads/main"])
def test_a_ref_that_gives_no_commit_is_bad_input_naming_ref(
    settings: Settings, fleet_signer: Signer, schemas: Schemas, ref: str
) -> None:
    refs = fleet_refs(settings.fleet)
    with pytest.raises(BadInput, match=rf"^--ref '{re.escape(ref)}' is no branch, commit or ref of "):
        verify_fleet(settings, schemas, ref)
    assert fleet_refs(settings.fleet) == refs


def test_a_commit_id_full_or_abbreviated_is_checked_like_its_branch(
    settings: Settings, fleet_signer: Signer, schemas: Schemas
) -> None:
    head = push_signed(settings, fleet_signer, cluster("alpha", "10.30.0.0/16"), branch="cluster/alpha")

    for ref in (head, head[:10].upper(), "cluster/alpha"):
        result = verify_fleet(settings, schemas, ref)
        assert (result.ref, result.commit, result.signer, result.clusters) == (
            ref,
            head,
            fleet_signer.fingerprint,
            ("alpha",),
        )
        assert result.findings == ()


def test_a_pull_request_head_is_fetched_and_checked_with_mains_trust(
    settings: Settings, fleet_signer: Signer, second_signer: Signer, schemas: Schemas
) -> None:
    signed = push_pull_head(settings, fleet_signer, 7, cluster("alpha", "10.30.0.0/16"))
    key_file = f"keys/{second_signer.fingerprint}.asc"
    own_key = {
        f"flux/system/{key_file}": export_public(second_signer),
        fleet.SYSTEM_KUSTOMIZATION: fleet.system_kustomization([f"keys/{fleet_signer.fingerprint}.asc", key_file]),
    }
    vouching = push_pull_head(settings, second_signer, 8, own_key)

    result = verify_fleet(settings, schemas, "refs/pull/7/head")
    assert (result.commit, result.signer, result.clusters, result.findings) == (
        signed,
        fleet_signer.fingerprint,
        ("alpha",),
        (),
    )
    # Reached from no branch, the head is still found by its full id: the remote serves it.
    assert verify_fleet(settings, schemas, signed).commit == signed
    # A pull request that adds its own key is still judged by main's keys.
    refused = verify_fleet(settings, schemas, "refs/pull/8/head")
    assert refused.commit == vouching
    assert refused.findings == (
        f"commit {vouching[:12]} is signed by a key the fleet does not trust; "
        "sign with a key in flux/system/keys/ or add its public key there",
    )


def _at(name: str, cidr: str, version: str) -> dict[str, str]:
    spec = sample_spec(name=name, cidr=cidr, kubernetes_version=version)
    manifests = render(spec, sample_outputs(cidr=cidr), PROJECT_ROOT / "templates", MANAGEMENT_CIDRS)
    return {m.path: m.content for m in manifests.files}


def test_a_branch_that_skips_a_minor_against_main_is_a_finding(
    settings: Settings, fleet_signer: Signer, schemas: Schemas
) -> None:
    push_signed(settings, fleet_signer, _at("demo", "10.20.0.0/16", "v1.31.2"))
    push_signed(settings, fleet_signer, _at("demo", "10.20.0.0/16", "v1.33.1"), branch="cluster/demo")
    push_signed(settings, fleet_signer, _at("demo", "10.20.0.0/16", "v1.32.0"), branch="upgrade/demo")

    skipped = verify_fleet(settings, schemas, "cluster/demo")
    one_up = verify_fleet(settings, schemas, "upgrade/demo")

    assert skipped.findings == (
        "clusters/demo: v1.33.1 skips minors from v1.31.2 on main; the KubeadmControlPlane upgrades one minor "
        "at a time; upgrade to v1.32.x then v1.33.x, merging each",
    )
    assert one_up.findings == ()


def test_a_branch_that_changes_the_management_cluster_is_checked_like_a_cluster(
    settings: Settings, fleet_signer: Signer, schemas: Schemas
) -> None:
    first = fleet.initial_files("KEY", "F" * 40)
    providers = f"{management.PROVIDERS_DIR}providers.yaml"
    bumped = first[providers].replace("v2.10.0", "v2.11.0").replace("  version: v1.11.3\n", "  versoin: v1.11.3\n", 1)
    unverified = first[management.BOOTSTRAP_KUSTOMIZATION].split("patches:")[0]
    operator = f"{management.OPERATOR_DIR}kustomization.yaml"
    push_signed(
        settings,
        fleet_signer,
        {providers: bumped, management.BOOTSTRAP_KUSTOMIZATION: unverified, operator: "resources: [gone.yaml]\n"},
        branch="management/bump",
    )

    findings = verify_fleet(settings, schemas, "management/bump").findings

    assert findings[0].startswith("flux/management/operator: kubectl kustomize fails: ")
    assert "gone.yaml" in findings[0]
    assert findings[1:] == (
        f"{providers}: CoreProvider/cluster-api .spec.versoin: unknown field",
        f"{providers}: CoreProvider/cluster-api spec.version is unset; this pipeline renders manifests for v1.11.3: "
        "set it back, or upgrade the pipeline that pins it",
        f"{providers}: InfrastructureProvider/aws spec.version is 'v2.11.0'; this pipeline renders manifests for "
        "v2.10.0: set it back, or upgrade the pipeline that pins it",
        "flux/flux-system/kustomization.yaml: GitRepository flux-system would not verify signatures against "
        "fleet-signing-keys; restore the patch that sets spec.verify on GitRepository flux-system",
    )
    assert verify_fleet(settings, schemas).findings == ()


def test_a_fleet_without_its_management_part_is_a_finding(
    settings: Settings, fleet_signer: Signer, schemas: Schemas
) -> None:
    gone = tuple(path for path in fleet.initial_files("KEY", "F" * 40) if path.startswith("flux/management/"))
    push_signed(settings, fleet_signer, {}, branch="management/drop", drop=gone)

    findings = verify_fleet(settings, schemas, "management/drop").findings

    assert findings == (
        "flux/management: missing; the management cluster would have no Cluster API providers: "
        "restore it from the pipeline's first commit",
    )
