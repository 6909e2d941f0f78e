"""The management cluster's part of the fleet: what the first commit declares, checked by the real CRDs and kubectl."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import cli, fleet, management, yaml_docs
from pipeline.config import PROJECT_ROOT
from pipeline.render import render
from pipeline.schemas import Schemas
from pipeline.validate import schema_findings
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec, schemas_from

KEYS = fleet.TRUSTED_KEYS_REF


@pytest.fixture
def schemas() -> Schemas:
    return schemas_from(os.environ["PIPELINE_CRDS_DIR"])


@pytest.fixture
def first_commit() -> dict[str, str]:
    return fleet.initial_files("KEY", "F" * 40)


def objects(files: Mapping[str, str], prefix: str = "") -> list[dict[str, Any]]:
    return [
        doc
        for path, text in sorted(files.items())
        if path.startswith(prefix) and path.endswith(".yaml") and not path.endswith("kustomization.yaml")
        for doc in yaml_docs.documents(text)
        if isinstance(doc, dict) and "apiVersion" in doc
    ]


def built(files: Mapping[str, str], folder: str, root: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize` makes of `folder` with `files` written under `root`."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    out = subprocess.run(["kubectl", "kustomize", str(root / folder)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_the_first_commit_declares_the_four_providers_through_the_operator(first_commit: dict[str, str]) -> None:
    providers = [o for o in objects(first_commit, "flux/") if o["apiVersion"].startswith("operator.cluster.x-k8s.io/")]

    declared = [(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"], o["spec"]["version"]) for o in providers]
    assert declared == [
        ("CoreProvider", "cluster-api", "capi-system", "v1.11.3"),
        ("BootstrapProvider", "kubeadm", "capi-kubeadm-bootstrap-system", "v1.11.3"),
        ("ControlPlaneProvider", "kubeadm", "capi-kubeadm-control-plane-system", "v1.11.3"),
        ("InfrastructureProvider", "aws", "capa-system", "v2.10.0"),
    ]
    # CAPA's credentials are a reference to a Secret made at bootstrap, in the provider's own namespace.
    assert providers[-1]["spec"]["configSecret"] == {"name": "capa-variables", "namespace": "capa-system"}
    assert not [o for o in objects(first_commit) if o["kind"] == "Secret"]


def test_the_operator_runs_before_the_providers_and_after_cert_manager(first_commit: dict[str, str]) -> None:
    flux = {o["metadata"]["name"]: o for o in objects(first_commit, management.MANAGEMENT_DIR)}

    assert flux["capi-operator"]["spec"]["path"] == "./flux/management/operator"
    assert flux["capi-providers"]["spec"]["path"] == "./flux/management/providers"
    assert flux["capi-providers"]["spec"]["dependsOn"] == [{"name": "capi-operator"}]
    # Ready only when what it applied is: the providers wait for the operator's release, not its mere object.
    assert flux["capi-operator"]["spec"]["wait"] is True
    assert flux["cluster-api-operator"]["spec"]["dependsOn"] == [{"name": "cert-manager"}]
    for name in ("capi-operator", "capi-providers"):
        assert flux[name]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "fleet"}
    charts = {
        name: (flux[name]["spec"]["chart"]["spec"]["chart"], flux[name]["spec"]["chart"]["spec"]["version"])
        for name in ("cert-manager", "cluster-api-operator")
    }
    assert charts == {
        "cert-manager": ("cert-manager", "v1.18.2"),
        "cluster-api-operator": ("cluster-api-operator", "0.28.0"),
    }
    assert flux["cluster-api-operator"]["spec"]["install"]["crds"] == "CreateReplace"


def test_each_folder_builds_and_the_root_reaches_only_the_flux_kustomizations(
    first_commit: dict[str, str], tmp_path: Path
) -> None:
    root = built(first_commit, management.MANAGEMENT_DIR, tmp_path)
    operator = built(first_commit, management.OPERATOR_DIR, tmp_path)
    providers = built(first_commit, management.PROVIDERS_DIR, tmp_path)
    bootstrap = built(first_commit, management.BOOTSTRAP_DIR, tmp_path)

    # The root Kustomization on ./flux must not apply provider objects before the operator's CRDs exist.
    assert [(o["kind"], o["metadata"]["name"]) for o in root] == [
        ("Kustomization", "capi-operator"),
        ("Kustomization", "capi-providers"),
    ]
    assert sorted(o["kind"] for o in operator) == ["HelmRelease", "HelmRelease", "HelmRepository", "HelmRepository"]
    assert sorted(o["kind"] for o in providers) == [
        "BootstrapProvider",
        "ControlPlaneProvider",
        "CoreProvider",
        "InfrastructureProvider",
        *["Namespace"] * 4,
    ]
    # Bootstrap's source, verifying signatures, and the root Kustomization on ./flux, as bootstrap writes them;
    # Flux's controllers only once bootstrap writes them.
    by_kind = {o["kind"]: o for o in bootstrap}
    assert sorted((kind, o["metadata"]["name"]) for kind, o in by_kind.items()) == [
        ("GitRepository", "flux-system"),
        ("Kustomization", "flux-system"),
    ]
    assert by_kind["Kustomization"]["spec"]["path"] == "./flux"


def test_bootstraps_gitrepository_verifies_against_the_fleets_keys(
    first_commit: dict[str, str], tmp_path: Path
) -> None:
    # What flux bootstrap writes into gotk-sync.yaml, in the shape it writes it.
    sync = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {"interval": "1m0s", "ref": {"branch": "main"}, "secretRef": {"name": "flux-system"}, "url": "x"},
    }
    files = {**first_commit, f"{management.BOOTSTRAP_DIR}gotk-sync.yaml": yaml.safe_dump(sync)}

    (source,) = built(files, management.BOOTSTRAP_DIR, tmp_path)

    assert source["spec"]["verify"] == {"mode": "HEAD", "secretRef": {"name": KEYS}}
    assert management.bootstrap_findings(first_commit[management.BOOTSTRAP_KUSTOMIZATION], KEYS) == []


def test_the_objects_fit_the_operator_and_flux_crds_strictly(first_commit: dict[str, str], schemas: Schemas) -> None:
    managed = {path: text for path, text in first_commit.items() if path.startswith(management.MANAGEMENT_DIR)}
    kinds = {(o["apiVersion"], o["kind"]) for o in objects(managed) if o["apiVersion"] != "v1"}

    assert schema_findings(managed, schemas) == []
    # Each was judged by a CRD schema, none passed over as unknown.
    assert all(schemas.checker(kind) is not None for kind in kinds), kinds - set(schemas.served)
    assert ("operator.cluster.x-k8s.io/v1alpha2", "InfrastructureProvider") in kinds


def test_a_provider_that_breaks_its_crd_is_reported_field_by_field(
    first_commit: dict[str, str], schemas: Schemas
) -> None:
    path = f"{management.PROVIDERS_DIR}providers.yaml"
    extra = "  patches: []\n  manifestPatches: []\n"
    text = first_commit[path].replace("  version: v2.10.0\n", "  versoin: v2.10.0\n" + extra)

    findings = schema_findings({path: text}, schemas)

    assert findings == [
        f"{path}: InfrastructureProvider/aws .spec.versoin: unknown field",
    ]
    both = first_commit[path].replace("  version: v2.10.0\n", "  version: v2.10.0\n" + extra)
    assert schema_findings({path: both}, schemas) == [
        f"{path}: InfrastructureProvider/aws .spec: Cannot set both 'patches' and 'manifestPatches'"
    ]


def test_a_changed_or_missing_pin_is_reported(first_commit: dict[str, str]) -> None:
    managed = {path: text for path, text in first_commit.items() if path.startswith(management.MANAGEMENT_DIR)}
    providers = f"{management.PROVIDERS_DIR}providers.yaml"
    operator = f"{management.OPERATOR_DIR}cluster-api-operator.yaml"
    assert management.version_findings(managed) == []

    changed = {
        **managed,
        providers: managed[providers].replace("v2.10.0", "v2.11.0"),
        operator: managed[operator].replace("version: 0.28.0", "version: 0.29.0"),
    }
    without_core = {**managed, providers: managed[providers].split("---\n", 1)[1]}

    assert management.version_findings(changed) == [
        f"{operator}: HelmRelease/cluster-api-operator chart version is '0.29.0'; the provider objects are checked "
        "against the CRDs of 0.28.0: set it back",
        f"{providers}: InfrastructureProvider/aws spec.version is 'v2.11.0'; this pipeline renders manifests for "
        "v2.10.0: set it back, or upgrade the pipeline that pins it",
    ]
    assert management.version_findings(without_core) == [
        "flux/management: no CoreProvider/cluster-api; the management cluster needs it to build the fleet's "
        "clusters: restore it from the pipeline's first commit"
    ]


def test_the_pins_serve_the_api_versions_the_clusters_are_rendered_in(schemas: Schemas) -> None:
    """The rendered Cluster API kinds are v1beta2, first served by Cluster API v1.11, and CAPA's v1beta2, which
    CAPA v2.10 serves alone; a rendered apiVersion outside these groups would need a provider pinned here."""
    manifests = render(sample_spec(), sample_outputs(), PROJECT_ROOT / "templates", MANAGEMENT_CIDRS)
    rendered = {(o["apiVersion"], o["kind"]) for o in objects({m.path: m.content for m in manifests.files})}
    capi_groups = ("cluster.x-k8s.io", "bootstrap.cluster.x-k8s.io", "controlplane.cluster.x-k8s.io")
    capa_groups = ("infrastructure.cluster.x-k8s.io",)

    cluster_api = {api for api, _ in rendered if api.split("/")[0].endswith("cluster.x-k8s.io")}

    assert cluster_api == {f"{group}/v1beta2" for group in (*capi_groups, *capa_groups)}
    assert all(schemas.checker(key) is not None for key in rendered if key[0] in cluster_api)


# --- the README's one-time bootstrap ---------------------------------------------------------

# The flags of `flux bootstrap git`: its own (https://fluxcd.io/flux/cmd/flux_bootstrap_git/, flux2's
# cmd/flux/bootstrap_git.go) and those every `flux bootstrap` subcommand inherits
# (https://fluxcd.io/flux/cmd/flux_bootstrap/, flux2's cmd/flux/bootstrap.go).
FLUX_BOOTSTRAP_GIT_FLAGS = frozenset(
    {"url", "interval", "path", "username", "password", "silent", "allow-insecure-http"}
    | {"author-email", "author-name", "branch", "ca-file", "cluster-domain", "commit-message-appendix"}
    | {"components", "components-extra", "force", "gpg-key-id", "gpg-key-ring", "gpg-passphrase"}
    | {"image-pull-secret", "log-level", "network-policy", "private-key-file", "registry", "token-auth"}
    | {"toleration-keys", "version", "watch-all-namespaces"}
)
# clusterawsadm's subcommands (https://cluster-api-aws.sigs.k8s.io/clusterawsadm/clusterawsadm.html).
CLUSTERAWSADM_COMMANDS = frozenset({("bootstrap", "credentials", "encode-as-profile")})
SHELL_BUILTINS = frozenset({"export", "rm"})


def management_section() -> str:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Management cluster\n")
    return text[start : text.index("\n## ", start + 1)]


def shell_blocks() -> list[str]:
    return [part.split("```", 1)[0] for part in management_section().split("```sh\n")[1:]]


def commands() -> list[list[str]]:
    """Each simple command of the section's shell, as words, with what $(...) runs as one more command."""
    found: list[list[str]] = []
    for block in shell_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            for inner in re.findall(r"\$\(([^)]*)\)", line):
                found.append(shlex.split(inner))
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("|") if "|" in words else len(words)
                found.append(words[:cut])
                words = words[cut + 1 :]
    return [c for c in found if c]


def flags(words: Sequence[str]) -> list[str]:
    return [w[2:].split("=", 1)[0] for w in words if w.startswith("--")]


def test_the_bootstrap_is_valid_shell() -> None:
    for block in shell_blocks():
        subprocess.run(["bash", "-n"], input=block, text=True, check=True)


def test_every_bootstrap_command_is_real_with_its_real_flags() -> None:
    programs = []
    for words in commands():
        program = words[0]
        programs.append(program)
        if words[:3] == ["python", "-m", "pipeline"]:
            cli._parser().parse_args(words[3:])  # exits 2, failing the test, on an unknown command or flag
        elif program == "flux":
            assert words[1:3] == ["bootstrap", "git"], words
            assert set(flags(words)) <= FLUX_BOOTSTRAP_GIT_FLAGS, set(flags(words)) - FLUX_BOOTSTRAP_GIT_FLAGS
        elif program == "clusterawsadm":
            assert tuple(words[1:]) in CLUSTERAWSADM_COMMANDS, words
        elif program == "kubectl":
            # `--help` after the words prints the help of the deepest subcommand they name, flags and all.
            subcommand = [w for w in words[1:] if not w.startswith("-")]
            usage = subprocess.run(["kubectl", *subcommand, "--help"], capture_output=True, text=True, check=True)
            known = (
                usage.stdout + subprocess.run(["kubectl", "options"], capture_output=True, text=True, check=True).stdout
            )
            for flag in flags(words):
                assert f"--{flag}=" in known, (words, flag)
        elif program == "gpg":
            options = subprocess.run(["gpg", "--dump-options"], capture_output=True, text=True, check=True).stdout
            assert all(f"--{flag}" in options.split() for flag in flags(words)), words
        elif program == "git":
            # `git SUBCOMMAND -h` prints its usage and exits 129.
            git_usage = subprocess.run(["git", words[1], "-h"], capture_output=True, text=True, check=False).stdout
            assert all(f"--{flag}" in git_usage for flag in flags(words)), words
        else:
            assert program in SHELL_BUILTINS, words
    assert {"python", "flux", "kubectl", "gpg", "git", "clusterawsadm"} <= set(programs)


def test_the_hand_made_trusted_keys_are_the_secret_flux_system_generates(
    first_commit: dict[str, str], tmp_path: Path
) -> None:
    """The README's kubectl command, run against the fleet's own files, makes the Secret kustomize makes."""
    (create,) = [
        words for words in commands() if words[:3] == ["kubectl", "create", "secret"] and "fleet-signing-keys" in words
    ]
    fleet_dir = tmp_path / "fleet"
    generated = [o for o in built(first_commit, fleet.SYSTEM_DIR, fleet_dir) if o["kind"] == "Secret"]
    by_hand = subprocess.run(
        create, cwd=tmp_path, capture_output=True, text=True, check=True, env={**os.environ, "KUBECONFIG": "/dev/null"}
    )

    made = yaml.safe_load(by_hand.stdout)
    assert (made["metadata"]["name"], made["metadata"]["namespace"], made["data"]) == (
        generated[0]["metadata"]["name"],
        generated[0]["metadata"]["namespace"],
        generated[0]["data"],
    )
    assert made["metadata"]["name"] == fleet.TRUSTED_KEYS_REF


def test_the_credentials_secret_is_the_one_the_provider_names() -> None:
    (create,) = [
        words for words in commands() if words[:3] == ["kubectl", "create", "secret"] and "capa-variables" in words
    ]

    assert create[4] == management.CREDENTIALS_SECRET
    assert f"--namespace={management.PROVIDERS[-1].namespace}" in create
    assert any(w.startswith(f"--from-literal={management.CREDENTIALS_KEY}=") for w in create)


def test_a_flux_kustomization_from_another_source_is_reported(first_commit: dict[str, str]) -> None:
    path = f"{management.MANAGEMENT_DIR}kustomizations.yaml"
    managed = {p: t for p, t in first_commit.items() if p.startswith(management.MANAGEMENT_DIR)}
    assert management.source_findings(managed) == []
    # The second Kustomization, capi-providers, reads from a GitRepository that verifies nothing.
    head, tail = managed[path].split("---\n")
    unverified = {**managed, path: head + "---\n" + tail.replace("name: fleet", "name: unsigned")}

    assert management.source_findings(unverified) == [
        f"{path}: Kustomization/capi-providers spec.sourceRef must be the GitRepository 'fleet', "
        "whose commits Flux verifies"
    ]


def test_the_fleets_source_reads_with_the_credentials_bootstrap_stores(first_commit: dict[str, str]) -> None:
    path = "flux/system/gitrepository.yaml"
    (source,) = objects({path: first_commit[path]})
    (bootstrap,) = [words for words in commands() if words[:3] == ["flux", "bootstrap", "git"]]

    # flux bootstrap stores the repository's credentials in the Secret named by --secret-name, "flux-system".
    assert not [w for w in bootstrap if w.startswith("--secret-name")]
    assert source["spec"]["secretRef"] == {"name": "flux-system"}
    assert source["spec"]["verify"] == {"mode": "HEAD", "secretRef": {"name": KEYS}}
