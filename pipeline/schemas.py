"""The CRD schemas manifests are validated against: from a configured directory or the pinned releases."""

from __future__ import annotations

import functools
import hashlib
import json
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import yaml

from pipeline import atomic_file
from pipeline.config import Settings
from pipeline.errors import SchemaChecksumMismatch, SchemasMissing

CAPI = ("kubernetes-sigs/cluster-api", "ae7ff047db499ac3858ade268ba38db8c9f128bb")
CAPA = ("kubernetes-sigs/cluster-api-provider-aws", "2cf09d78547d32975570a4b9ba5496bdfe26abeb")
# Flux's controllers at their release tags.
SOURCE_CONTROLLER = ("fluxcd/source-controller", "092bcff3c9c3f258a44310507201d295ff294ba6")  # v1.9.1
KUSTOMIZE_CONTROLLER = ("fluxcd/kustomize-controller", "1324b615da01038e2859cbcde604bd5434f21933")  # v1.9.4
HELM_CONTROLLER = ("fluxcd/helm-controller", "372c34e2b4a455d24ef6cbb8321c82c4533dbbd8")  # v1.6.3
NOTIFICATION_CONTROLLER = ("fluxcd/notification-controller", "0b6fcb118ea64a36d7ca7d29904e4f5075be87bc")  # v1.9.3
CAPI_OPERATOR = ("kubernetes-sigs/cluster-api-operator", "d32c1c2a0bd227e2a49e8c3db9c7ef6b131ec11f")  # v0.28.0
UPSTREAM = "https://raw.githubusercontent.com"

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class PinnedCrd:
    """One upstream CRD file at a pinned commit; `cache_path` is also the layout of a mirror."""

    source: tuple[str, str]  # (repository, commit)
    upstream_path: str
    cache_path: str
    sha256: str

    @property
    def url(self) -> str:
        repo, commit = self.source
        return f"{UPSTREAM}/{repo}/{commit}/{self.upstream_path}"


# The kinds the pipeline renders; the checksums are those of the release snapshots in use.
PINNED: tuple[PinnedCrd, ...] = (
    PinnedCrd(
        CAPI,
        "bootstrap/kubeadm/config/crd/bases/bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.yaml",
        "bootstrap.cluster.x-k8s.io/bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.yaml",
        "f9c8195edb1053435a6f23a1fb0cbb479a5fe074a9231badec073c72ec7fc7ad",
    ),
    PinnedCrd(
        CAPI,
        "core/config/crd/bases/cluster.x-k8s.io_clusters.yaml",
        "cluster.x-k8s.io/cluster.x-k8s.io_clusters.yaml",
        "39768d1dbe14c7932e4fc4aacd90fcc08395f5922f74886e1a3d87868ce8d997",
    ),
    PinnedCrd(
        CAPI,
        "core/config/crd/bases/cluster.x-k8s.io_machinedeployments.yaml",
        "cluster.x-k8s.io/cluster.x-k8s.io_machinedeployments.yaml",
        "7e24327ee53661507cf25fb2e0aa24053e7d565c2de72f52cdec412fde908dba",
    ),
    PinnedCrd(
        CAPI,
        "core/config/crd/bases/cluster.x-k8s.io_machinehealthchecks.yaml",
        "cluster.x-k8s.io/cluster.x-k8s.io_machinehealthchecks.yaml",
        "ed6db855b4b04e8a84ad9449023a52c64527945f4d43bff97cb8e555572e3b34",
    ),
    PinnedCrd(
        CAPI,
        "controlplane/kubeadm/config/crd/bases/controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml",
        "controlplane.cluster.x-k8s.io/controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml",
        "0c97877297fb7f4211e96a1716901ec415e9e1f676c2433cd22effc175cda805",
    ),
    PinnedCrd(
        CAPA,
        "config/crd/bases/infrastructure.cluster.x-k8s.io_awsclusters.yaml",
        "infrastructure.cluster.x-k8s.io/infrastructure.cluster.x-k8s.io_awsclusters.yaml",
        "9c6cb7342da599b15e4e452364eab2a1ed499d617931c94d6a8b7b4900a29815",
    ),
    PinnedCrd(
        CAPA,
        "config/crd/bases/infrastructure.cluster.x-k8s.io_awsmachinetemplates.yaml",
        "infrastructure.cluster.x-k8s.io/infrastructure.cluster.x-k8s.io_awsmachinetemplates.yaml",
        "5afa23f71ddcfc46ab7e19bf76ceb45a16b6f6984a5ec7660b5a5273058c2312",
    ),
    PinnedCrd(
        SOURCE_CONTROLLER,
        "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml",
        "source.toolkit.fluxcd.io/source.toolkit.fluxcd.io_gitrepositories.yaml",
        "39a5a46c81539c992abc53f9be3e5434cd70d50a10d169b1e8a450e0df1c9d09",
    ),
    PinnedCrd(
        SOURCE_CONTROLLER,
        "config/crd/bases/source.toolkit.fluxcd.io_helmrepositories.yaml",
        "source.toolkit.fluxcd.io/source.toolkit.fluxcd.io_helmrepositories.yaml",
        "97c7759df00946cbb9a75a56457cff9964b2543d2248df859cef21e26b8e2ae6",
    ),
    PinnedCrd(
        KUSTOMIZE_CONTROLLER,
        "config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
        "kustomize.toolkit.fluxcd.io/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
        "da23ca0e6b4c80d3d26a91583137491e147ef4ef1e2208aece0d0af4ef851974",
    ),
    PinnedCrd(
        HELM_CONTROLLER,
        "config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml",
        "helm.toolkit.fluxcd.io/helm.toolkit.fluxcd.io_helmreleases.yaml",
        "aa8638ac68465ceac1f93a617baf5be833c589c51fd78a7384a4a274c252becc",
    ),
    PinnedCrd(
        NOTIFICATION_CONTROLLER,
        "config/crd/bases/notification.toolkit.fluxcd.io_providers.yaml",
        "notification.toolkit.fluxcd.io/notification.toolkit.fluxcd.io_providers.yaml",
        "243ad33ac88ed965c6cd72b342dc5a93ecf5eefde2e03f4c2ea026b52d872135",
    ),
    PinnedCrd(
        NOTIFICATION_CONTROLLER,
        "config/crd/bases/notification.toolkit.fluxcd.io_alerts.yaml",
        "notification.toolkit.fluxcd.io/notification.toolkit.fluxcd.io_alerts.yaml",
        "2b8f79249b39881bd23c49868f114c44c6e632dfcda451da576adfa16c64226f",
    ),
    PinnedCrd(
        CAPI_OPERATOR,
        "config/crd/bases/operator.cluster.x-k8s.io_coreproviders.yaml",
        "operator.cluster.x-k8s.io/operator.cluster.x-k8s.io_coreproviders.yaml",
        "bfe9514f2e84765fc2c25190e133933f930e8af4fe0d8812742b4244d1578463",
    ),
    PinnedCrd(
        CAPI_OPERATOR,
        "config/crd/bases/operator.cluster.x-k8s.io_bootstrapproviders.yaml",
        "operator.cluster.x-k8s.io/operator.cluster.x-k8s.io_bootstrapproviders.yaml",
        "a8404b87f8700423afeecd86cacbf4727851fc16984571a617870aea603eecca",
    ),
    PinnedCrd(
        CAPI_OPERATOR,
        "config/crd/bases/operator.cluster.x-k8s.io_controlplaneproviders.yaml",
        "operator.cluster.x-k8s.io/operator.cluster.x-k8s.io_controlplaneproviders.yaml",
        "ec67e9050d7ebb0a0cee187f36be06dd1b9bc816bcb4addf39f588e95e98bc34",
    ),
    PinnedCrd(
        CAPI_OPERATOR,
        "config/crd/bases/operator.cluster.x-k8s.io_infrastructureproviders.yaml",
        "operator.cluster.x-k8s.io/operator.cluster.x-k8s.io_infrastructureproviders.yaml",
        "ad94514ae8407a901b3b13a9fa20e9285092cc907a262ef5c1d3d9d3562cf908",
    ),
)

# Kubernetes validates ObjectMeta itself; the CRDs only say `type: object`.
_OBJECT_META: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}

# OpenAPI keywords that carry no constraint jsonschema can check. The CEL rules (x-kubernetes-validations)
# stay: jsonschema passes over them, and cel_rules reads them from where they apply.
_DROPPED = frozenset(
    {
        "description",
        "default",
        "example",
        "format",
        "nullable",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-preserve-unknown-fields",
    }
)


@dataclass(frozen=True)
class Schemas:
    """JSON Schemas (Draft 2020-12) by (apiVersion, kind), strict about unknown fields."""

    served: Mapping[tuple[str, str], Schema]
    not_served: frozenset[tuple[str, str]]
    source: str  # where they were read from, for messages

    @functools.cached_property
    def groups(self) -> frozenset[str]:
        """API groups defined by these CRDs: objects in them are custom resources."""
        return frozenset(api.split("/")[0] for api, _ in (*self.served, *self.not_served))

    def checker(self, key: tuple[str, str]) -> Checker | None:
        """The checker of a served kind, built on first use and kept: building one walks its whole schema."""
        built = self._checkers.get(key)
        if built is None and key in self.served:
            built = self._checkers[key] = Checker(self.served[key])
        return built

    @functools.cached_property
    def _checkers(self) -> dict[tuple[str, str], Checker]:
        return {}


class Checker:
    """One kind's schema, judged natively first; the reference validator explains an object that fails."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        try:
            self._fast: jsonschema_rs.Validator | None = jsonschema_rs.validator_for(dict(schema))
        except (ValueError, jsonschema_rs.ValidationError):
            self._fast = None  # a schema the native validator cannot compile is judged by the reference one

    def errors(self, instance: Mapping[str, Any]) -> list[jsonschema.ValidationError]:
        """Every way `instance` breaks the schema, as the reference validator words them; none when it is valid."""
        if self._fast is not None and self._fast.is_valid(instance):
            return []
        return list(self._reference.iter_errors(instance))

    @functools.cached_property
    def _reference(self) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(self._schema)


def load(settings: Settings) -> Schemas:
    """The configured directory's CRDs, or the pinned ones (downloaded into the cache on first use)."""
    if settings.crds_dir is not None:
        schemas = from_directory(settings.crds_dir, cache=settings.schemas_cache)
        if not schemas.served:
            raise SchemasMissing(
                f"PIPELINE_CRDS_DIR={settings.crds_dir} holds no CustomResourceDefinitions; "
                "point it at a directory of CRD *.yaml files"
            )
        return schemas
    try:
        fetch(settings.crds_cache, base_url=settings.crds_mirror)
    except OSError as err:
        raise SchemasMissing(
            f"no CRD schemas: downloading them into {settings.crds_cache} failed ({err}); "
            "set PIPELINE_CRDS_DIR to a directory of CRDs, "
            "or run `python -m pipeline schemas fetch` where the network is reachable"
        ) from err
    return from_directory(settings.crds_cache, cache=settings.schemas_cache)


def fetch(cache: Path, *, base_url: str | None = None, timeout: float = 30.0) -> list[Path]:
    """Download the pinned CRDs missing from `cache`, verify every checksum, then write them.

    `base_url` names a mirror laid out like the cache. All files are verified before any
    is written, so a mismatch leaves the cache as it was.
    """
    missing = [pin for pin in PINNED if not _cached(cache, pin)]
    downloaded: list[tuple[PinnedCrd, bytes]] = []
    for pin in missing:
        url = f"{base_url.rstrip('/')}/{pin.cache_path}" if base_url else pin.url
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
        actual = hashlib.sha256(body).hexdigest()
        if actual != pin.sha256:
            raise SchemaChecksumMismatch(
                f"{url} has sha256 {actual}, pinned {pin.sha256}; nothing was cached. "
                "The upstream file or the mirror changed: check it before updating the pin"
            )
        downloaded.append((pin, body))
    for pin, body in downloaded:
        atomic_file.write(cache / pin.cache_path, body)
    return [cache / pin.cache_path for pin in PINNED]


def from_directory(root: Path, *, cache: Path | None = None) -> Schemas:
    """Every CustomResourceDefinition in root's *.yaml files, recursively.

    With `cache`, the schemas made from files with the same content are read back from there
    as JSON instead of parsing megabytes of CRD YAML again.
    """
    if not root.is_dir():
        raise SchemasMissing(f"CRD directory {root} does not exist; set PIPELINE_CRDS_DIR to one that does")
    paths = sorted(root.rglob("*.yaml"))
    if cache is None:
        return _parsed(paths, str(root))
    stored = cache / f"{_content_hash(root, paths)}.json"
    try:
        data = json.loads(stored.read_bytes())
    except (OSError, ValueError):
        schemas = _parsed(paths, str(root))
        data = {
            "served": [[api, kind, schema] for (api, kind), schema in sorted(schemas.served.items())],
            "not_served": sorted(schemas.not_served),
        }
        atomic_file.write(stored, json.dumps(data, sort_keys=True).encode("utf-8"))
        return schemas
    served = {(api, kind): schema for api, kind, schema in data["served"]}
    return Schemas(served, frozenset((api, kind) for api, kind in data["not_served"]), str(root))


def _content_hash(root: Path, paths: Iterable[Path]) -> str:
    """What the schemas are made of: the CRD files by path and content, and how this module turns them into schemas."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in paths:
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _parsed(paths: Iterable[Path], source: str) -> Schemas:
    served: dict[tuple[str, str], Schema] = {}
    not_served: set[tuple[str, str]] = set()
    for crd in _crds(paths):
        spec = crd["spec"]
        kind = spec["names"]["kind"]
        for version in spec["versions"]:
            key = (f"{spec['group']}/{version['name']}", kind)
            if version.get("served", False):
                served[key] = _object_schema(version["schema"]["openAPIV3Schema"])
            else:
                not_served.add(key)
    return Schemas(served, frozenset(not_served), source)


def strict(schema: Schema) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema that rejects unknown fields, as kubectl does."""
    out: dict[str, Any] = {k: v for k, v in schema.items() if k not in _DROPPED}
    if "properties" in out:
        out["properties"] = {name: strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), Mapping):
        out["additionalProperties"] = strict(out["additionalProperties"])
    if isinstance(out.get("items"), Mapping):
        out["items"] = strict(out["items"])
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in out:
            out[combinator] = [strict(sub) for sub in out[combinator]]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _object_schema(openapi: Schema) -> dict[str, Any]:
    schema = strict(openapi)
    schema["properties"] = {**schema.get("properties", {}), "metadata": _OBJECT_META}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _crds(paths: Iterable[Path]) -> Iterator[Mapping[str, Any]]:
    for path in paths:
        with path.open("rb") as stream:
            for doc in yaml.load_all(stream, Loader=yaml.CSafeLoader):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    yield doc


def _cached(cache: Path, pin: PinnedCrd) -> bool:
    path = cache / pin.cache_path
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == pin.sha256
