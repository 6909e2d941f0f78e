"""Validate stage: a cluster's manifests against the CRD schemas, kustomize, and the rest of the fleet."""

from __future__ import annotations

import ipaddress
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from pipeline import addons, cel_rules, journal, process, yaml_docs
from pipeline.errors import CommandFailed, ManifestInvalid
from pipeline.fleet import VPC_CIDR_ANNOTATION, Neighbour
from pipeline.model import Manifest, Manifests
from pipeline.render import BASELINE_DIR, flux_name
from pipeline.schemas import Schemas

ZONES_ANNOTATION = "fleet.pipeline/zones"
_CLUSTER_API = "cluster.x-k8s.io/"


@dataclass(frozen=True)
class _Object:
    file: str
    body: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata")
        return str(metadata.get("name", "?")) if isinstance(metadata, Mapping) else "?"

    @property
    def namespace(self) -> str:
        metadata = self.body.get("metadata")
        return str(metadata.get("namespace", "")) if isinstance(metadata, Mapping) else ""

    def finding(self, path: str, message: str) -> str:
        return f"{self.file}: {self.kind}/{self.name} {path}: {message}"


@dataclass(frozen=True)
class ValidateCheckpoint:
    """What the validate stage leaves in the run journal: that the manifests of its inputs passed."""

    def to_json(self) -> dict[str, Any]:
        return {"valid": True}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ValidateCheckpoint:
        if not journal.flag(data, "valid"):
            raise journal.Malformed("'valid' is false, and only a stage that passed is journaled")
        return cls()


def validate(manifests: Manifests, schemas: Schemas, fleet: Sequence[Neighbour]) -> tuple[str, ...]:
    """Raise ManifestInvalid with one line per problem; when the cluster's files are sound, the CEL rules
    that could not be judged offline, one line each, for the caller to show."""
    findings, unchecked = validate_each([manifests], schemas, fleet)
    if findings:
        raise ManifestInvalid(findings)
    return unchecked


def validate_each(
    clusters: Sequence[Manifests], schemas: Schemas, fleet: Sequence[Neighbour]
) -> tuple[list[str], tuple[str, ...]]:
    """Each cluster's findings, one line each, and the CEL rules no cluster could have judged offline.

    `fleet` is the rest of the fleet as its fleet-wide rules see it. kubectl kustomize builds every
    cluster in one run; only when that fails is each built on its own, to say which one fails.
    """
    findings: list[str] = []
    unchecked: set[str] = set()
    for manifests in clusters:
        objects = list(_objects(manifests, findings))
        for obj in objects:
            findings.extend(_check_object(obj, schemas, unchecked))
        findings.extend(_check_owned(manifests.cluster, objects))
        findings.extend(_check_failure_domains(objects))
        findings.extend(_check_ready(manifests.cluster, objects))
        findings.extend(_check_fleet(manifests.cluster, objects, fleet))
    findings.extend(_check_kustomize(clusters))
    return findings, tuple(sorted(unchecked))


def schema_findings(files: Mapping[str, str], schemas: Schemas) -> list[str]:
    """Each object of loose YAML files (the fleet's own flux/system) against its schema, one line per problem."""
    findings: list[str] = []
    loose = Manifests("", tuple(Manifest(path, text) for path, text in sorted(files.items()) if path.endswith(".yaml")))
    for obj in list(_objects(loose, findings)):
        findings.extend(_check_object(obj, schemas, set()))
    return findings


def _objects(manifests: Manifests, findings: list[str]) -> Iterator[_Object]:
    for manifest in manifests.files:
        # kustomize reads its own file; the build check covers it.
        if PurePosixPath(manifest.path).name == "kustomization.yaml":
            continue
        try:
            docs = yaml_docs.documents(manifest.content)
        except yaml_docs.Error as err:
            findings.append(f"{manifest.path}: not YAML: {' '.join(str(err).split())}")
            continue
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, Mapping):
                findings.append(f"{manifest.path}: a document is a {type(doc).__name__}, not an object")
                continue
            yield _Object(manifest.path, doc)


def _check_object(obj: _Object, schemas: Schemas, unchecked: set[str]) -> Iterator[str]:
    api_version, kind = obj.body.get("apiVersion"), obj.body.get("kind")
    if not isinstance(api_version, str) or not api_version:
        yield obj.finding(".apiVersion", "missing")
    if not isinstance(kind, str) or not kind:
        yield obj.finding(".kind", "missing")
    metadata = obj.body.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        yield obj.finding(".metadata.name", "missing")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return
    key = (api_version, kind)
    checker = schemas.checker(key)
    if checker is None:
        if key in schemas.not_served:
            yield obj.finding(".apiVersion", f"{api_version} {kind} is defined but not served; use a served version")
        elif api_version.split("/")[0] in schemas.groups:
            yield obj.finding(".apiVersion", f"no CRD in {schemas.source} serves {api_version} {kind}")
        # Otherwise a built-in or Flux kind, which these CRDs do not describe.
        return
    errors = sorted(checker.errors(obj.body), key=lambda e: (_json_path(e.absolute_path), e.message))
    for error in errors:
        yield from _describe(obj, error)
    if errors:
        return
    judged = cel_rules.evaluate(obj.body, schemas.served[key])
    for path, message in judged.failures:
        yield obj.finding(path, message)
    unchecked.update(f"{kind} {path}: {rule} ({why})" for path, rule, why in judged.unevaluated)


def _describe(obj: _Object, error: jsonschema.ValidationError) -> Iterator[str]:
    path = _json_path(error.absolute_path)
    # One line per unknown field, named in its path, as kubectl's strict validation reports it.
    if (
        error.validator == "additionalProperties"
        and isinstance(error.instance, Mapping)
        and isinstance(error.schema, Mapping)
    ):
        known = error.schema.get("properties", {})
        for field in sorted(set(error.instance) - set(known)):
            yield obj.finding(f"{path.rstrip('.')}.{field}", "unknown field")
        return
    yield obj.finding(path, error.message)


def _json_path(parts: Sequence[str | int] | Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return text or "."


def _check_kustomize(clusters: Sequence[Manifests]) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        root = Path(tmp)
        folders = []
        for manifests in clusters:
            written = list(_write_tree(root, manifests))
            if written:
                yield from written
                continue
            directory = f"clusters/{manifests.cluster}"
            if not (root / directory / "kustomization.yaml").is_file():
                yield f"{directory}/kustomization.yaml: missing"
                continue
            folders.append(directory)
            if (root / directory / BASELINE_DIR / "kustomization.yaml").is_file():
                folders.append(f"{directory}/{BASELINE_DIR}")
        if len(folders) > 1:
            # One kubectl for the lot: each cluster is a resource of a kustomization that holds them all.
            (root / "kustomization.yaml").write_text(_all_of(folders), encoding="utf-8")
            if _kustomize(root, root) is None:
                return
        for directory in folders:
            failed = _kustomize(root, root / directory)
            if failed is not None:
                yield f"{directory}: kubectl kustomize fails: {failed}"


def _write_tree(root: Path, manifests: Manifests) -> Iterator[str]:
    for manifest in manifests.files:
        relative = PurePosixPath(manifest.path)
        if relative.is_absolute() or ".." in relative.parts:
            yield f"{manifest.path}: not a path inside the fleet repo"
            return
    for manifest in manifests.files:
        target = root / manifest.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(manifest.content, encoding="utf-8")


def _all_of(folders: Sequence[str]) -> str:
    listed = "".join(f"  - {folder}\n" for folder in folders)
    return f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{listed}"


def _kustomize(root: Path, directory: Path) -> str | None:
    """What kubectl kustomize says when `directory` does not build, paths relative to `root`; None when it builds."""
    try:
        process.run(["kubectl", "kustomize", str(directory)])
    except CommandFailed as err:
        return " ".join(err.output.replace(str(root) + "/", "").split())
    return None


def _check_owned(cluster: str, objects: Sequence[_Object]) -> Iterator[str]:
    """A cluster's objects live in its own namespace (the Flux Kustomization in flux-system, named after it),
    so no two clusters of the fleet can ever write the same object."""
    workload = f"clusters/{cluster}/{BASELINE_DIR}/"
    for obj in objects:
        if obj.file.startswith(workload):
            continue  # applied to the workload cluster through its kubeconfig, not to the management cluster
        if obj.file.startswith("flux/"):
            wanted = ("flux-system", flux_name(cluster))
            if (obj.namespace, obj.name) != wanted:
                yield obj.finding(
                    ".metadata", f"must be {wanted[1]} in namespace {wanted[0]}, which cluster {cluster} owns"
                )
        elif obj.kind == "Namespace":
            if obj.name != cluster:
                yield obj.finding(".metadata.name", f"cluster {cluster} may only create its own namespace, {cluster}")
        elif obj.namespace != cluster:
            yield obj.finding(".metadata.namespace", f"must be {cluster}, the namespace cluster {cluster} owns")


def _check_fleet(cluster: str, objects: Sequence[_Object], fleet: Sequence[Neighbour]) -> Iterator[str]:
    our_cidr = _vpc_cidr(objects)
    if our_cidr is None:
        yield f"clusters/{cluster}: the Cluster lacks a valid '{VPC_CIDR_ANNOTATION}' annotation"
    for other in fleet:
        if other.cluster == cluster:
            yield f"clusters/{cluster}: a cluster named '{other.cluster}' is already in the fleet"
            continue
        their_cidr = _network(other.cidr)
        if our_cidr is not None and their_cidr is not None and our_cidr.overlaps(their_cidr):
            yield _overlap(cluster, our_cidr, other.cluster, their_cidr)


def fleet_overlaps(fleet: Sequence[Neighbour]) -> Iterator[str]:
    """Each pair of clusters whose VPC CIDRs overlap, once, from one sorted sweep over the fleet.

    CIDR blocks only nest, so the blocks still open at a block's start are exactly those it overlaps.
    """
    blocks = [(network, n.cluster) for n in fleet if (network := _network(n.cidr)) is not None]
    blocks.sort(key=lambda b: (b[0].version, int(b[0].network_address), -int(b[0].broadcast_address)))
    open_blocks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for block, name in blocks:
        open_blocks = [(b, n) for b, n in open_blocks if b.version == block.version and b.overlaps(block)]
        for other, other_name in open_blocks:
            yield _overlap(name, block, other_name, other)
        open_blocks.append((block, name))


def _overlap(
    cluster: str,
    ours: ipaddress.IPv4Network | ipaddress.IPv6Network,
    other: str,
    theirs: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> str:
    return f"clusters/{cluster}: VPC CIDR {ours} overlaps cluster '{other}' ({theirs}); choose a free range"


def _network(cidr: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return None if cidr is None else ipaddress.ip_network(cidr)
    except ValueError:
        return None


def _check_failure_domains(objects: Sequence[_Object]) -> Iterator[str]:
    """A MachineDeployment in a zone the network lacks would wait for machines CAPA cannot place."""
    zones = next((_annotation(o, ZONES_ANNOTATION) for o in objects if _is_cluster(o)), None)
    if zones is None:
        return
    for obj in objects:
        if obj.kind != "MachineDeployment" or not str(obj.body.get("apiVersion", "")).startswith(_CLUSTER_API):
            continue
        spec = obj.body.get("spec")
        template = spec.get("template") if isinstance(spec, Mapping) else None
        machine = template.get("spec") if isinstance(template, Mapping) else None
        zone = machine.get("failureDomain") if isinstance(machine, Mapping) else None
        if zone is not None and zone not in zones.split(","):
            yield obj.finding(
                ".spec.template.spec.failureDomain", f"{zone} is not one of the cluster's zones ({zones})"
            )


def _check_ready(cluster: str, objects: Sequence[_Object]) -> Iterator[str]:
    """What a cluster needs to become Ready once Cluster API made its machines, as the add-ons provide it."""
    provided = {}
    for obj in objects:
        metadata = obj.body.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        if isinstance(labels, Mapping) and isinstance(labels.get(addons.ROLE_LABEL), str):
            provided[labels[addons.ROLE_LABEL]] = obj
    control_plane = next((o for o in objects if o.kind == "KubeadmControlPlane"), None)
    if control_plane is None:
        return
    where = f"clusters/{cluster}"
    if "cni" not in provided:
        yield f"{where}: no add-on provides a CNI, so no node becomes Ready; enable addons.cilium or add one"
    external = "'name': 'cloud-provider', 'value': 'external'" in str(control_plane.body)
    ccm = provided.get("cloud-controller-manager")
    if external and ccm is None:
        yield (
            f"{where}: kubelets run with cloud-provider external and no add-on provides the cloud-controller-manager, "
            "so no node gets a providerID; enable addons.awsCloudControllerManager"
        )
    spec = control_plane.body.get("spec")
    version = spec.get("version") if isinstance(spec, Mapping) else None
    tag = None if ccm is None else _ccm_image_tag(ccm)
    if ccm is not None and tag is not None and isinstance(version, str) and addons.minor(tag) != addons.minor(version):
        yield ccm.finding(
            ".spec.values.image.tag",
            f"cloud-controller-manager {tag} does not match Kubernetes {version}; "
            f"use {addons.ccm_image(version)}, or drop the tag to follow the cluster",
        )


def _ccm_image_tag(obj: _Object) -> str | None:
    spec = obj.body.get("spec")
    values = spec.get("values") if isinstance(spec, Mapping) else None
    image = values.get("image") if isinstance(values, Mapping) else None
    tag = image.get("tag") if isinstance(image, Mapping) else None
    return tag if isinstance(tag, str) and re.match(r"v?1\.[0-9]+\.", tag) else None


def _is_cluster(obj: _Object) -> bool:
    return obj.kind == "Cluster" and str(obj.body.get("apiVersion", "")).startswith(_CLUSTER_API)


def _annotation(obj: _Object, key: str) -> str | None:
    metadata = obj.body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    value = annotations.get(key) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else None


def _vpc_cidr(objects: Sequence[_Object]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    for obj in (o for o in objects if _is_cluster(o)):
        return _network(_annotation(obj, VPC_CIDR_ANNOTATION))
    return None
