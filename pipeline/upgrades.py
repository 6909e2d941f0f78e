"""Kubernetes version moves that Cluster API carries out: one minor up at a time, never down.

The KubeadmControlPlane refuses anything else once it is on the management cluster, after the
merge; refused here, the spec says the way there instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline import yaml_docs
from pipeline.addons import minor
from pipeline.errors import SpecError
from pipeline.spec import ClusterSpec


def version_on_main(files: Mapping[str, str]) -> str | None:
    """The Kubernetes version the cluster's KubeadmControlPlane on main runs; None for a new cluster."""
    for path, text in sorted(files.items()):
        if not path.endswith("/controlplane.yaml"):
            continue
        for doc in yaml_docs.documents(text):
            if isinstance(doc, dict) and doc.get("kind") == "KubeadmControlPlane":
                version = (doc.get("spec") or {}).get("version")
                return str(version) if version else None
    return None


def check(spec: ClusterSpec, on_main: Mapping[str, str]) -> str | None:
    """The version on main when the spec moves from it as Cluster API can; SpecError otherwise."""
    current = version_on_main(on_main)
    if current is None:
        return None
    refused = refusal(spec.kubernetes_version, current)
    if refused is not None:
        raise SpecError("kubernetesVersion", *refused)
    return current


def refusal(wanted: str, current: str) -> tuple[str, str] | None:
    """Why the KubeadmControlPlane would refuse moving from `current` to `wanted`, and the way; None: it would not."""
    was, to = minor(current), minor(wanted)
    if to < was:
        return (
            f"{wanted} is older than {current} on main; Cluster API does not downgrade",
            f"keep v1.{was}.x, or build a new cluster at {wanted}",
        )
    if to > was + 1:
        path = " then ".join(f"v1.{m}.x" for m in range(was + 1, to + 1))
        return (
            f"{wanted} skips minors from {current} on main; the KubeadmControlPlane upgrades one minor at a time",
            f"upgrade to {path}, merging each",
        )
    return None
