"""What the management cluster's Flux would check on a fleet branch, as findings: a PR check.

Trust always comes from main: a branch under review cannot vouch for itself by adding a key.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline import fleet, git, process, upgrades
from pipeline.config import Settings
from pipeline.errors import CommandFailed, ManifestInvalid, SigningError
from pipeline.model import Manifests
from pipeline.schemas import Schemas
from pipeline.signing import verify_commit
from pipeline.validate import schema_findings, validate

_FLUX_KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/"
_FLUX_SOURCE = {"kind": "GitRepository", "name": "fleet"}  # the verified source fleet.py creates


@dataclass(frozen=True)
class Verification:
    ref: str
    commit: str | None  # the ref's head; None when the ref does not exist
    signer: str | None  # fingerprint of the trusted key that signed it
    clusters: tuple[str, ...]
    findings: tuple[str, ...]  # one line each; none means Flux would apply this head as it is
    unchecked: tuple[str, ...] = ()  # CEL rules that only the API server can judge, one line each


def verify_fleet(settings: Settings, schemas: Schemas, ref: str = fleet.MAIN) -> Verification:
    """Check branch `ref` of the fleet as Flux would: signature, cluster manifests, Flux layout."""
    with git.clone(settings.fleet) as checkout:
        main_head = git.head_of(checkout, fleet.MAIN)
        head = git.head_of(checkout, ref)
        if main_head is None or head is None:
            missing = fleet.MAIN if main_head is None else ref
            return Verification(ref, head, None, (), (f"{settings.fleet}: no branch '{missing}'",))
        signer, findings = _signer(checkout, head, main_head)
        clusters = fleet.clusters_at(checkout, head)
        on_main = () if head == main_head else fleet.clusters_at(checkout, main_head)
        system = git.read_tree(checkout, head, fleet.SYSTEM_DIR)
        flux = git.read_tree(checkout, head, fleet.FLUX_CLUSTERS_DIR)
    unchecked: set[str] = set()
    findings.extend(_check_clusters(clusters, schemas, unchecked))
    findings.extend(_check_upgrades(clusters, on_main))
    findings.extend(_kustomize_build(system, fleet.SYSTEM_DIR))
    findings.extend(schema_findings(system, schemas))
    findings.extend(_check_flux_clusters(flux, [c.cluster for c in clusters]))
    return Verification(
        ref, head, signer, tuple(c.cluster for c in clusters), tuple(findings), tuple(sorted(unchecked))
    )


def _signer(checkout: git.Checkout, head: str, main_head: str) -> tuple[str | None, list[str]]:
    """The trusted key that signed `head`, or the finding saying why none did."""
    try:
        return verify_commit(checkout.path, head, fleet.keys_at(checkout, main_head)), []
    except SigningError as err:
        return None, [str(err)]


def _check_clusters(clusters: Sequence[Manifests], schemas: Schemas, unchecked: set[str]) -> Iterator[str]:
    """Each cluster against the schemas, kustomize and the clusters before it.

    Checking a cluster only against those sorted before it visits each pair once, so a
    rule that two clusters break together (an overlap, a shared object) is reported once.
    """
    for index, cluster in enumerate(clusters):
        try:
            unchecked.update(validate(cluster, schemas, clusters[:index]))
        except ManifestInvalid as invalid:
            yield from invalid.findings


def _check_upgrades(clusters: Sequence[Manifests], on_main: Sequence[Manifests]) -> Iterator[str]:
    """Each cluster's Kubernetes version against main's: the control plane moves one minor up at a time."""
    before = {m.cluster: upgrades.version_on_main({f.path: f.content for f in m.files}) for m in on_main}
    for cluster in clusters:
        current = before.get(cluster.cluster)
        wanted = upgrades.version_on_main({f.path: f.content for f in cluster.files})
        refused = None if current is None or wanted is None else upgrades.refusal(wanted, current)
        if refused is not None:
            yield f"{fleet.CLUSTERS_DIR}{cluster.cluster}: {refused[0]}; {refused[1]}"


def _kustomize_build(files: Mapping[str, str], folder: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        root = Path(tmp)
        for path, content in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        try:
            process.run(["kubectl", "kustomize", str(root / folder)])
        except CommandFailed as err:
            output = " ".join(err.output.replace(f"{root}/", "").split())
            yield f"{folder.rstrip('/')}: kubectl kustomize fails: {output}"


def _check_flux_clusters(flux: Mapping[str, str], clusters: Sequence[str]) -> Iterator[str]:
    """One Flux Kustomization per cluster folder, each applying that folder from the verified source."""
    declared = {
        PurePosixPath(path).stem: path
        for path in flux
        if PurePosixPath(path).parent == PurePosixPath(fleet.FLUX_CLUSTERS_DIR) and path.endswith(".yaml")
    }
    for name in sorted(set(clusters) - set(declared)):
        yield f"{fleet.CLUSTERS_DIR}{name}: no Flux Kustomization {fleet.FLUX_CLUSTERS_DIR}{name}.yaml applies it"
    for name, path in sorted(declared.items()):
        if name not in clusters:
            yield f"{path}: no cluster folder {fleet.CLUSTERS_DIR}{name}/ for it to apply"
        yield from _check_flux_kustomization(path, flux[path], name)


def _check_flux_kustomization(path: str, content: str, name: str) -> Iterator[str]:
    try:
        docs = [doc for doc in yaml.safe_load_all(content) if isinstance(doc, Mapping)]
    except yaml.YAMLError as err:
        yield f"{path}: not YAML: {' '.join(str(err).split())}"
        return
    kustomizations = [doc for doc in docs if _is_flux_kustomization(doc)]
    if len(kustomizations) != 1:
        yield f"{path}: holds {len(kustomizations)} Flux Kustomizations; it must hold exactly one"
        return
    found = kustomizations[0].get("spec")
    spec: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    wanted = f"./{fleet.CLUSTERS_DIR}{name}"
    if _normal_path(spec.get("path")) != _normal_path(wanted):
        yield f"{path}: spec.path is {spec.get('path')!r}; it must be {wanted}"
    source = spec.get("sourceRef")
    if not isinstance(source, Mapping) or {k: source.get(k) for k in _FLUX_SOURCE} != _FLUX_SOURCE:
        # Another source would be applied without the fleet's signature verification.
        yield f"{path}: spec.sourceRef must be the GitRepository 'fleet', whose commits Flux verifies"


def _is_flux_kustomization(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "Kustomization" and str(doc.get("apiVersion", "")).startswith(_FLUX_KUSTOMIZE_API)


def _normal_path(path: object) -> str | None:
    return str(PurePosixPath(path)) if isinstance(path, str) and path else None
