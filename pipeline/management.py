"""The management cluster's own desired state in the fleet, and the rules `verify` holds it to.

Cluster API's providers are declared through the Cluster API Operator, pinned to the releases whose API versions
the cluster manifests are rendered in. The operator and cert-manager (which issues its webhook certificates) are
Helm releases that Flux installs first: the providers are applied by a Flux Kustomization that waits for them, so
the operator's CRDs exist before any provider object reaches the API server.

`flux bootstrap git --path=./flux` writes Flux's own manifests into flux/flux-system/. The fleet ships that folder
already: the root Flux Kustomization, which applies ./flux, in gotk-sync.yaml as bootstrap writes it, and a
kustomization.yaml, which bootstrap keeps, with a patch that makes bootstrap's GitRepository verify commits against
the fleet's trusted keys: without it, what bootstrap applies from ./flux would not be checked for signatures at all.
One root, so no object under ./flux has two Flux Kustomizations applying it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from pipeline import yaml_docs
from pipeline.addons import Chart

MANAGEMENT_DIR = "flux/management/"
OPERATOR_DIR = "flux/management/operator/"
PROVIDERS_DIR = "flux/management/providers/"
# Every folder here that kustomize must build: the first is reached by the root Flux Kustomization on ./flux,
# the others by the Flux Kustomizations it declares.
FOLDERS = (MANAGEMENT_DIR, OPERATOR_DIR, PROVIDERS_DIR)
# Where `flux bootstrap git --path=./flux` writes its own manifests; bootstrap keeps a kustomization.yaml it finds.
BOOTSTRAP_DIR = "flux/flux-system/"
BOOTSTRAP_KUSTOMIZATION = "flux/flux-system/kustomization.yaml"
# Bootstrap's GitRepository and the root Flux Kustomization on ./flux, which bootstrap writes again, to the same effect.
BOOTSTRAP_SYNC = "flux/flux-system/gotk-sync.yaml"
ROOT_PATH = "./flux"
BOOTSTRAP_SOURCE = "flux-system"  # the GitRepository that bootstrap creates
FLEET_SOURCE = "fleet"  # the verified GitRepository of flux/system, which the Flux Kustomizations here apply from
FLUX_NAMESPACE = "flux-system"

OPERATOR_API = "operator.cluster.x-k8s.io/v1alpha2"
# Cluster API v1.11 is the first release that serves the v1beta2 API the cluster manifests are written in, and the
# line CAPA v2.10 is built and tested against; CAPA v2.10 serves only v1beta2 for its AWS kinds.
CAPI_VERSION = "v1.11.3"
CAPA_VERSION = "v2.10.0"
# The Cluster API Operator release whose provider CRDs validate the objects here (operator.cluster.x-k8s.io).
OPERATOR_CHART = Chart("https://kubernetes-sigs.github.io/cluster-api-operator", "cluster-api-operator", "0.28.0")
CERT_MANAGER_CHART = Chart("https://charts.jetstack.io", "cert-manager", "v1.18.2")
OPERATOR_NAMESPACE = "capi-operator-system"
CERT_MANAGER_NAMESPACE = "cert-manager"

# CAPA reads its AWS credentials from this Secret's key, created once at bootstrap: never in git.
CREDENTIALS_SECRET = "capa-variables"  # noqa: S105 - the name of the Secret, not a credential
CREDENTIALS_KEY = "AWS_B64ENCODED_CREDENTIALS"


@dataclass(frozen=True)
class Provider:
    kind: str
    name: str
    namespace: str
    version: str


PROVIDERS: tuple[Provider, ...] = (
    Provider("CoreProvider", "cluster-api", "capi-system", CAPI_VERSION),
    Provider("BootstrapProvider", "kubeadm", "capi-kubeadm-bootstrap-system", CAPI_VERSION),
    Provider("ControlPlaneProvider", "kubeadm", "capi-kubeadm-control-plane-system", CAPI_VERSION),
    Provider("InfrastructureProvider", "aws", "capa-system", CAPA_VERSION),
)
_INFRASTRUCTURE = PROVIDERS[-1]

_OPERATOR_FILE = f"{OPERATOR_DIR}cluster-api-operator.yaml"
_VERIFIED_SOURCES = (
    {"kind": "GitRepository", "name": FLEET_SOURCE},
    {"kind": "GitRepository", "name": FLEET_SOURCE, "namespace": FLUX_NAMESPACE},
)


def files(trusted_keys_secret: str, source_url: str) -> dict[str, str]:
    """The management cluster's files in a new fleet, by path. `trusted_keys_secret`: the Secret of the fleet's
    trusted public keys, which bootstrap's GitRepository verifies commits against; `source_url`: the address
    Flux fetches the fleet from."""
    return {
        f"{MANAGEMENT_DIR}kustomization.yaml": _kustomize(["kustomizations.yaml"]),
        f"{MANAGEMENT_DIR}kustomizations.yaml": _stream(
            "The operator and cert-manager first; the providers once the operator's CRDs are served.",
            [
                _flux_kustomization("capi-operator", OPERATOR_DIR, depends_on=None),
                _flux_kustomization("capi-providers", PROVIDERS_DIR, depends_on="capi-operator"),
            ],
        ),
        f"{OPERATOR_DIR}kustomization.yaml": _kustomize(["cert-manager.yaml", "cluster-api-operator.yaml"]),
        f"{OPERATOR_DIR}cert-manager.yaml": _stream(
            "cert-manager issues the webhook certificates of the operator and of every provider.",
            _release("cert-manager", CERT_MANAGER_CHART, CERT_MANAGER_NAMESPACE, {"crds": {"enabled": True}}, None),
        ),
        _OPERATOR_FILE: _stream(
            "The Cluster API Operator installs and upgrades the providers declared in ../providers.",
            _release(
                "cluster-api-operator",
                OPERATOR_CHART,
                OPERATOR_NAMESPACE,
                {"cert-manager": {"enabled": False}},  # installed on its own, above
                "cert-manager",
            ),
        ),
        f"{PROVIDERS_DIR}kustomization.yaml": _kustomize(["namespaces.yaml", "providers.yaml"]),
        f"{PROVIDERS_DIR}namespaces.yaml": _stream(
            "Each provider lives in its own namespace.",
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": p.namespace}} for p in PROVIDERS],
        ),
        f"{PROVIDERS_DIR}providers.yaml": _stream(
            f"Pinned to the releases this fleet's manifests are rendered for; `verify` reports any other version.\n"
            f"CAPA reads {CREDENTIALS_KEY} from the Secret {CREDENTIALS_SECRET} in {_INFRASTRUCTURE.namespace},\n"
            "made once at bootstrap (see the README): no credentials are in git.",
            [_provider(p) for p in PROVIDERS],
        ),
        BOOTSTRAP_KUSTOMIZATION: _bootstrap_kustomization(trusted_keys_secret),
        # A placeholder that bootstrap overwrites with Flux's own controllers.
        f"{BOOTSTRAP_DIR}gotk-components.yaml": "",
        BOOTSTRAP_SYNC: _bootstrap_sync(source_url),
    }


def _bootstrap_sync(source_url: str) -> str:
    """gotk-sync.yaml as `flux bootstrap git --url=<source_url> --branch=main --path=./flux` writes it."""
    source = _flux_object(
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        BOOTSTRAP_SOURCE,
        {"interval": "1m0s", "ref": {"branch": "main"}, "secretRef": {"name": BOOTSTRAP_SOURCE}, "url": source_url},
    )
    root = _flux_object(
        "kustomize.toolkit.fluxcd.io/v1",
        "Kustomization",
        BOOTSTRAP_SOURCE,
        {
            "interval": "10m0s",
            "path": ROOT_PATH,
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": BOOTSTRAP_SOURCE},
        },
    )
    return "# This manifest was generated by flux. DO NOT EDIT.\n---\n" + _dump(source) + "---\n" + _dump(root)


def version_findings(found: Mapping[str, str]) -> list[str]:
    """Each pinned version under flux/management that differs from what this pipeline renders for, and each
    provider missing, one line each. `found`: the folder's files by path."""
    wanted = {(p.kind, p.name): p for p in PROVIDERS}
    seen: set[tuple[str, str]] = set()
    findings: list[str] = []
    for path, doc in _documents(found):
        key = (str(doc.get("kind")), _name(doc))
        if str(doc.get("apiVersion", "")).startswith("operator.cluster.x-k8s.io/") and key in wanted:
            seen.add(key)
            version = _field(doc, "spec", "version")
            pinned = wanted[key].version
            if version != pinned:
                shown = "unset" if version is None else repr(version)
                findings.append(
                    f"{path}: {key[0]}/{key[1]} spec.version is {shown}; this pipeline renders manifests "
                    f"for {pinned}: set it back, or upgrade the pipeline that pins it"
                )
        if doc.get("kind") == "HelmRelease" and _name(doc) == OPERATOR_CHART.name:
            seen.add(("HelmRelease", OPERATOR_CHART.name))
            version = _field(doc, "spec", "chart", "spec", "version")
            if version != OPERATOR_CHART.version:
                findings.append(
                    f"{path}: HelmRelease/{OPERATOR_CHART.name} chart version is {version!r}; the provider objects "
                    f"are checked against the CRDs of {OPERATOR_CHART.version}: set it back"
                )
    for key in [*wanted, ("HelmRelease", OPERATOR_CHART.name)]:
        if key not in seen:
            findings.append(
                f"{MANAGEMENT_DIR.rstrip('/')}: no {key[0]}/{key[1]}; the management cluster needs it to build "
                "the fleet's clusters: restore it from the pipeline's first commit"
            )
    return findings


def source_findings(found: Mapping[str, str]) -> list[str]:
    """Each Flux Kustomization under flux/management that would apply from another source than the verified one:
    what it applies would not be checked for signatures."""
    return [
        f"{path}: Kustomization/{_name(doc)} spec.sourceRef must be the GitRepository '{FLEET_SOURCE}', "
        "whose commits Flux verifies"
        for path, doc in _documents(found)
        if doc.get("kind") == "Kustomization"
        and str(doc.get("apiVersion", "")).startswith("kustomize.toolkit.fluxcd.io/")
        and _field(doc, "spec", "sourceRef") not in _VERIFIED_SOURCES
    ]


def bootstrap_findings(found: str | None, trusted_keys_secret: str) -> list[str]:
    """What is wrong with flux/flux-system/kustomization.yaml (its text, None when absent): bootstrap's
    GitRepository must verify commits against the fleet's trusted keys."""
    fix = f"restore the patch that sets spec.verify on GitRepository {BOOTSTRAP_SOURCE}"
    if found is None:
        return [f"{BOOTSTRAP_KUSTOMIZATION}: missing; Flux's bootstrap source would apply unsigned commits: {fix}"]
    try:
        doc = yaml_docs.document(found)
    except yaml_docs.Error as err:
        return [f"{BOOTSTRAP_KUSTOMIZATION}: not YAML: {' '.join(str(err).split())}"]
    patches = doc.get("patches") if isinstance(doc, dict) else None
    wanted = _verify_patch(trusted_keys_secret)
    for patch in patches if isinstance(patches, list) else []:
        if not isinstance(patch, dict) or patch.get("target") != wanted["target"]:
            continue
        try:
            if yaml_docs.document(str(patch.get("patch", ""))) == yaml_docs.document(wanted["patch"]):
                return []
        except yaml_docs.Error:
            continue
    return [
        f"{BOOTSTRAP_KUSTOMIZATION}: GitRepository {BOOTSTRAP_SOURCE} would not verify signatures "
        f"against {trusted_keys_secret}; {fix}"
    ]


def _documents(found: Mapping[str, str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every object of the folder's YAML files; what does not parse, schema_findings reports."""
    for path in sorted(found):
        if not path.endswith(".yaml") or PurePosixPath(path).name == "kustomization.yaml":
            continue
        try:
            docs = yaml_docs.documents(found[path])
        except yaml_docs.Error:
            continue
        yield from ((path, doc) for doc in docs if isinstance(doc, Mapping))


def _name(doc: Mapping[str, Any]) -> str:
    metadata = doc.get("metadata")
    return str(metadata.get("name")) if isinstance(metadata, Mapping) else ""


def _field(doc: Mapping[str, Any], *path: str) -> object:
    value: object = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _flux_kustomization(name: str, folder: str, depends_on: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "10m",
        "retryInterval": "1m",
        "timeout": "10m",
        "path": f"./{folder.rstrip('/')}",
        "prune": True,
        # Ready only once everything it applied is: the providers wait for the operator's releases.
        "wait": True,
        "sourceRef": {"kind": "GitRepository", "name": FLEET_SOURCE},
    }
    if depends_on is not None:
        spec["dependsOn"] = [{"name": depends_on}]
    return _flux_object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", name, spec)


def _flux_object(api_version: str, kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """An object in Flux's namespace, keys in the order Kubernetes objects are usually written."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "spec": dict(spec),
    }


def _release(
    name: str, chart: Chart, namespace: str, values: Mapping[str, Any], depends_on: str | None
) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {
        "interval": "1h",
        "releaseName": name,
        "targetNamespace": namespace,
        "chart": {
            "spec": {
                "chart": chart.name,
                "version": chart.version,
                "sourceRef": {"kind": "HelmRepository", "name": name},
            }
        },
        # CRDs are created and upgraded with the chart: the operator's provider kinds change with its releases.
        "install": {"createNamespace": True, "crds": "CreateReplace", "remediation": {"retries": 3}},
        "upgrade": {"crds": "CreateReplace", "remediation": {"retries": 3}},
        "values": dict(values),
    }
    if depends_on is not None:
        spec["dependsOn"] = [{"name": depends_on}]
    return [
        _flux_object(
            "source.toolkit.fluxcd.io/v1", "HelmRepository", name, {"interval": "1h", "url": chart.repository}
        ),
        _flux_object("helm.toolkit.fluxcd.io/v2", "HelmRelease", name, spec),
    ]


def _provider(provider: Provider) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": provider.version}
    if provider is _INFRASTRUCTURE:
        spec["configSecret"] = {"name": CREDENTIALS_SECRET, "namespace": provider.namespace}
    return {
        "apiVersion": OPERATOR_API,
        "kind": provider.kind,
        "metadata": {"name": provider.name, "namespace": provider.namespace},
        "spec": spec,
    }


def _verify_patch(trusted_keys_secret: str) -> dict[str, Any]:
    operations = [
        {
            "op": "add",
            "path": "/spec/verify",
            "value": {"mode": "HEAD", "secretRef": {"name": trusted_keys_secret}},
        }
    ]
    return {"target": {"kind": "GitRepository", "name": BOOTSTRAP_SOURCE}, "patch": json.dumps(operations)}


def _bootstrap_kustomization(trusted_keys_secret: str) -> str:
    header = (
        "# flux bootstrap writes gotk-components.yaml and gotk-sync.yaml here and keeps this file. The patch\n"
        "# makes bootstrap's GitRepository apply only commits signed by a key in flux/system/keys/, as the\n"
        "# fleet's own GitRepository does.\n"
    )
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["gotk-components.yaml", "gotk-sync.yaml"],
        "patches": [_verify_patch(trusted_keys_secret)],
    }
    return header + _dump(body)


def _kustomize(resources: Sequence[str]) -> str:
    return _dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources})


def _stream(comment: str, docs: Sequence[Mapping[str, Any]]) -> str:
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + "---\n".join(_dump(doc) for doc in docs)


def _dump(doc: Mapping[str, Any]) -> str:
    # Insertion order reads as Kubernetes objects are usually written (apiVersion, kind, metadata, spec).
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False, width=120)
