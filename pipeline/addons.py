"""What a workload cluster needs after Cluster API made its machines: a CNI, the AWS cloud-controller-manager
and the EBS CSI driver, each a pinned Helm chart that Flux installs into the cluster through its kubeconfig.

The cloud-controller-manager has an image per Kubernetes minor; the table here is what the spec's
supported versions come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["cni", "cloud-controller-manager", "csi", "audit-logs", "network-policies"]
# Each role depends on the one before it: nodes need a network before the CCM can run on them, and
# the CCM must initialise them (provider ids, zones) before volumes can be attached.
ORDER: tuple[Role, ...] = ("cni", "cloud-controller-manager", "csi")
# Not needed to become Ready, but what the security baseline asks of every cluster (pipeline/policy.py).
BASELINE: tuple[Role, ...] = ("audit-logs", "network-policies")
# registry.k8s.io/provider-aws/cloud-controller-manager, one release line per Kubernetes minor.
CCM_IMAGES = {30: "v1.30.7", 31: "v1.31.5", 32: "v1.32.5", 33: "v1.33.0", 34: "v1.34.0"}
ROLE_LABEL = "fleet.pipeline/provides"


@dataclass(frozen=True)
class Chart:
    repository: str  # a Helm repository's https URL
    name: str
    version: str


@dataclass(frozen=True)
class Catalogued:
    """A default add-on: the chart that plays `role`, and why it is the one."""

    key: str  # its field under `addons:` in the spec
    release: str
    role: Role
    chart: Chart


CATALOGUE: tuple[Catalogued, ...] = (
    # Cilium enforces NetworkPolicies (a plain overlay would not), runs without kube-proxy tricks on
    # any VPC, and is a CNCF graduated project with a chart per release.
    Catalogued("cilium", "cilium", "cni", Chart("https://helm.cilium.io/", "cilium", "1.18.2")),
    Catalogued(
        "awsCloudControllerManager",
        "aws-cloud-controller-manager",
        "cloud-controller-manager",
        Chart("https://kubernetes.github.io/cloud-provider-aws", "aws-cloud-controller-manager", "0.0.10"),
    ),
    Catalogued(
        "awsEbsCsiDriver",
        "aws-ebs-csi-driver",
        "csi",
        Chart("https://kubernetes-sigs.github.io/aws-ebs-csi-driver", "aws-ebs-csi-driver", "2.49.0"),
    ),
    # Fluent Bit tails the API server's audit log on each control-plane node and ships it to
    # CloudWatch Logs, so it outlives the node; a CNCF graduated project, its own chart.
    Catalogued(
        "fluentBit", "fluent-bit", "audit-logs", Chart("https://fluent.github.io/helm-charts", "fluent-bit", "0.47.0")
    ),
)


def ccm_image(kubernetes_version: str) -> str:
    return CCM_IMAGES[minor(kubernetes_version)]


def minor(version: str) -> int:
    return int(version.lstrip("v").split(".")[1])
