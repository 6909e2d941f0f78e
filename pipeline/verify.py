"""What the management cluster's Flux would check on a fleet branch, as findings: a PR check.

Trust always comes from main: a branch under review cannot vouch for itself by adding a key.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline import fleet, flux_kustomize, git, management, policy, policy_exceptions, process, upgrades, yaml_docs
from pipeline.config import Settings
from pipeline.errors import BadInput, CommandFailed, FleetFileInvalid, SigningError
from pipeline.model import Manifests
from pipeline.schemas import Schemas
from pipeline.signing import verify_commit
from pipeline.validate import fleet_overlaps, schema_findings, validate_each

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


def verify_fleet(
    settings: Settings, schemas: Schemas, ref: str = fleet.MAIN, *, everything: bool = False
) -> Verification:
    """Check `ref` of the fleet (a branch, a commit id or refs/pull/N/head) as Flux would: signature, cluster
    manifests, Flux layout.

    On a branch, the clusters it changes against main are checked in full; main itself, or any
    branch with `everything`, has every cluster checked. The fleet-wide rules always see every
    cluster, through what the fleet records of each.
    """
    with fleet.session(settings) as checkout:
        main_head = git.head_of(checkout, fleet.MAIN)
        if main_head is None:
            return Verification(ref, None, None, (), (f"{settings.fleet}: no branch '{fleet.MAIN}'",))
        head = git.resolve(checkout, ref)
        if head is None:
            raise BadInput(
                f"--ref {ref!r} is no branch, commit or ref of {settings.fleet}; "
                "give a branch name, a commit id (full or abbreviated) or refs/pull/N/head"
            )
        signer, findings = _signer(checkout, head, main_head)
        index = fleet.neighbours_at(checkout, head)
        names = [n.cluster for n in index]
        if not everything and head != main_head:
            touched = _clusters_touched(git.changed_paths(checkout, main_head, head))
            names = [name for name in names if name in touched]
        clusters = tuple(fleet.cluster_at(checkout, head, name) for name in names)
        before = {name: fleet.own_files_at(checkout, main_head, name) for name in names} if head != main_head else {}
        system = git.read_tree(checkout, head, fleet.SYSTEM_DIR)
        # Exceptions take effect once on main; the branch's own file must be sound to land.
        in_force = git.read_file(checkout, main_head, policy_exceptions.FILE)
        proposed = git.read_file(checkout, head, policy_exceptions.FILE)
        declared = git.list_files(checkout, head, fleet.FLUX_CLUSTERS_DIR)
        managed = git.read_tree(checkout, head, management.MANAGEMENT_DIR)
        bootstrap = git.read_file(checkout, head, management.BOOTSTRAP_KUSTOMIZATION)
        root = git.read_file(checkout, head, management.BOOTSTRAP_SYNC)
        # What the root Flux Kustomization applies, but for the clusters' own Kustomizations: those of the clusters
        # checked join it below, the others are as main has them, which was checked when they landed.
        flux_tree = git.read_tree(checkout, head, fleet.FLUX_DIR, leave_out=fleet.FLUX_CLUSTERS_DIR)
    unchecked: set[str] = set()
    found, cel = validate_each(clusters, schemas, ())
    findings.extend(found)
    unchecked.update(cel)
    findings.extend(fleet_overlaps(index))
    findings.extend(_check_upgrades(clusters, before))
    findings.extend(_kustomize_build(system, fleet.SYSTEM_DIR))
    findings.extend(schema_findings(system, schemas))
    findings.extend(schema_findings({} if root is None else {management.BOOTSTRAP_SYNC: root}, schemas))
    findings.extend(_check_flux_clusters(declared, [n.cluster for n in index], clusters))
    findings.extend(_check_policy(clusters, in_force, proposed))
    findings.extend(_check_management(managed, bootstrap, schemas))
    findings.extend(_check_flux_tree(flux_tree, clusters, findings))
    return Verification(ref, head, signer, tuple(n.cluster for n in index), tuple(findings), tuple(sorted(unchecked)))


def _check_flux_tree(files: Mapping[str, str], clusters: Sequence[Manifests], found: Sequence[str]) -> Iterator[str]:
    """./flux as the root Flux Kustomization builds it. Not when a folder in it failed to build already: that
    finding says why the whole would fail."""
    if any(": kubectl kustomize fails: " in finding for finding in found):
        return
    own = {m.path: m.content for cluster in clusters for m in cluster.files if m.path.startswith(fleet.FLUX_DIR)}
    yield from _kustomize_build({**files, **own}, fleet.FLUX_DIR)


def _check_policy(clusters: Sequence[Manifests], in_force: str | None, proposed: str | None) -> Iterator[str]:
    """The security baseline on each checked cluster, but for main's exceptions in force; an exception file
    that is malformed, or holds an expired exception, is a finding until it is mended."""
    today = policy_exceptions.today()
    try:
        exceptions = policy_exceptions.parse(in_force)
        checked = policy_exceptions.parse(proposed)
    except FleetFileInvalid as err:
        yield str(err)
        return
    yield from (policy_exceptions.expiry_finding(e) for e in policy_exceptions.expired(checked, today))
    found = [finding for cluster in clusters for finding in policy.check_manifests(cluster)]
    yield from (str(finding) for finding in policy_exceptions.judge(found, exceptions, today).findings)


def _check_management(files: Mapping[str, str], bootstrap: str | None, schemas: Schemas) -> Iterator[str]:
    """The management cluster's part of the fleet, like a cluster's: each folder builds, each object fits its CRD,
    the providers are the versions this pipeline renders for, everything is applied from the verified source, and
    Flux's bootstrap source verifies signatures."""
    if not files:
        yield (
            f"{management.MANAGEMENT_DIR.rstrip('/')}: missing; the management cluster would have no Cluster API "
            "providers: restore it from the pipeline's first commit"
        )
    else:
        for folder in management.FOLDERS:
            yield from _kustomize_build(files, folder)
        yield from schema_findings(files, schemas)
        yield from management.version_findings(files)
        yield from management.source_findings(files)
    yield from management.bootstrap_findings(bootstrap, fleet.TRUSTED_KEYS_REF)


def _clusters_touched(paths: Sequence[str]) -> set[str]:
    """The clusters whose folder or Flux Kustomization a change touches."""
    touched = set()
    for path in paths:
        parts = PurePosixPath(path).parts
        if path.startswith(fleet.CLUSTERS_DIR) and len(parts) >= 3:
            touched.add(parts[1])
        elif PurePosixPath(path).parent == PurePosixPath(fleet.FLUX_CLUSTERS_DIR) and path.endswith(".yaml"):
            touched.add(PurePosixPath(path).stem)
    return touched


def _signer(checkout: git.Checkout, head: str, main_head: str) -> tuple[str | None, list[str]]:
    """The trusted key that signed `head`, or the finding saying why none did."""
    try:
        return verify_commit(checkout.path, head, fleet.keys_at(checkout, main_head)), []
    except SigningError as err:
        return None, [str(err)]


def _check_upgrades(clusters: Sequence[Manifests], on_main: Mapping[str, Mapping[str, str]]) -> Iterator[str]:
    """Each cluster's Kubernetes version against main's: the control plane moves one minor up at a time."""
    for cluster in clusters:
        current = upgrades.version_on_main(on_main.get(cluster.cluster, {}))
        wanted = upgrades.version_on_main({f.path: f.content for f in cluster.files})
        refused = None if current is None or wanted is None else upgrades.refusal(wanted, current)
        if refused is not None:
            yield f"{fleet.CLUSTERS_DIR}{cluster.cluster}: {refused[0]}; {refused[1]}"


def _kustomize_build(files: Mapping[str, str], folder: str) -> Iterator[str]:
    """`folder` built as a Flux Kustomization's path is: with the kustomization.yaml Flux generates when it has none."""
    generated = flux_kustomize.generated(files, folder)
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        root = Path(tmp)
        written = {**files, f"{folder}kustomization.yaml": generated} if generated is not None else files
        for path, content in written.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        try:
            process.run(["kubectl", "kustomize", str(root / folder)])
        except CommandFailed as err:
            output = " ".join(err.output.replace(f"{root}/", "").split())
            yield f"{folder.rstrip('/')}: kubectl kustomize fails: {output}"


def _check_flux_clusters(flux: Sequence[str], clusters: Sequence[str], checked: Sequence[Manifests]) -> list[str]:
    """One Flux Kustomization per cluster folder; each checked cluster's applies its folder from the verified
    source. By path."""
    declared = {
        PurePosixPath(path).stem: path
        for path in flux
        if PurePosixPath(path).parent == PurePosixPath(fleet.FLUX_CLUSTERS_DIR) and path.endswith(".yaml")
    }
    findings = [
        f"{fleet.CLUSTERS_DIR}{name}: no Flux Kustomization {fleet.FLUX_CLUSTERS_DIR}{name}.yaml applies it"
        for name in sorted(set(clusters) - set(declared))
    ]
    findings += [
        f"{path}: no cluster folder {fleet.CLUSTERS_DIR}{name}/ for it to apply"
        for name, path in declared.items()
        if name not in clusters
    ]
    for cluster in checked:
        _, path = fleet.owned_paths(cluster.cluster)
        content = next((m.content for m in cluster.files if m.path == path), None)
        if content is not None:
            findings.extend(_check_flux_kustomization(path, content, cluster.cluster))
    return sorted(findings)


def _check_flux_kustomization(path: str, content: str, name: str) -> Iterator[str]:
    try:
        docs = [doc for doc in yaml_docs.documents(content) if isinstance(doc, Mapping)]
    except yaml_docs.Error as err:
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
