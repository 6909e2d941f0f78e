"""Immutable values passed between the stages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Target = Literal["local", "aws"]


@dataclass(frozen=True)
class AwsAccess:
    """How to reach the account: the same code path for real AWS and the local endpoint."""

    # The one variable of env the pipeline's own clients read too: AWS's SDKs and Terraform's provider trust it.
    CA_BUNDLE = "AWS_CA_BUNDLE"

    region: str
    endpoint: str | None  # None: AWS's own endpoints
    env: tuple[tuple[str, str], ...]  # credentials for child processes; empty: the ambient chain


@dataclass(frozen=True)
class Subnet:
    id: str
    cidr: str
    zone: str
    public: bool


@dataclass(frozen=True)
class Bastion:
    instance_id: str
    security_group_id: str
    public_ip: str


@dataclass(frozen=True)
class PlanSummary:
    add: int
    change: int
    destroy: int

    @property
    def empty(self) -> bool:
        return self.add == self.change == self.destroy == 0


@dataclass(frozen=True)
class NetworkOutputs:
    """What Terraform built, read from its (non-sensitive) outputs."""

    region: str
    vpc_id: str
    vpc_cidr: str
    subnets: tuple[Subnet, ...]  # sorted by (public, zone)
    nat_gateway_ids: tuple[str, ...]
    endpoint_ids: tuple[tuple[str, str], ...]  # (service, id), sorted
    bastion: Bastion | None
    secrets_key_arn: str  # the KMS key that encrypts the cluster's Secrets: an identifier, no key material
    audit_log_group: str  # the CloudWatch Logs group of the API server's audit log
    sensitive: tuple[str, ...] = ()  # names of the outputs marked sensitive, sorted; never their values

    def fingerprint(self) -> str:
        return fingerprint(asdict(self))


@dataclass(frozen=True)
class NetworkResult:
    outputs: NetworkOutputs
    changes: PlanSummary
    state_serial: int
    reused: bool = False  # taken from the state an unfinished run left, without planning again
    resources: tuple[Mapping[str, Any], ...] = ()  # the state's resources, for the policy's network rules


@dataclass(frozen=True)
class NetworkPlan:
    """What provisioning would change, found without changing anything."""

    summary: PlanSummary
    resources: tuple[tuple[str, str], ...]  # (address, add | change | destroy | replace), by address
    replaces_network: tuple[str, ...]  # aws_vpc / aws_subnet addresses the plan replaces or destroys
    outputs: NetworkOutputs | None  # the network as it is; None while the cluster has no state
    planned: tuple[Mapping[str, Any], ...] = ()  # every resource as the plan leaves it; empty when nothing changes
    digest: str = ""  # Terraform's planned changes in a canonical form, hashed (terraform.changes_digest)


@dataclass(frozen=True)
class Manifest:
    path: str  # relative to the fleet repo's root, POSIX separators
    content: str


@dataclass(frozen=True)
class Manifests:
    """Every file one cluster owns in the fleet repo, sorted by path."""

    cluster: str
    files: tuple[Manifest, ...]

    def fingerprint(self) -> str:
        return fingerprint({m.path: m.content for m in self.files})


@dataclass(frozen=True)
class CommitResult:
    branch: str
    commit: str  # the new head, or when unchanged the commit already holding this content
    changed: bool
    signer: str  # fingerprint of the signing key


def fingerprint(data: object) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
