"""Sample inputs for the render and validate tests: a three-zone cluster with two worker pools."""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path

from pipeline.model import NetworkOutputs, Subnet
from pipeline.policy_exceptions import Judged
from pipeline.schemas import Schemas, from_directory
from pipeline.spec import BastionSpec, ClusterSpec, ControlPlaneSpec, NetworkSpec, WorkerPool

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
# The management cluster's egress, as a fleet's fleet.yaml lists it.
MANAGEMENT_CIDRS = ("198.51.100.7/32",)
# A policy result with every rule holding and nothing excepted.
ALL_HOLD = Judged((), ())
SECRETS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0c7a1f0e-5d2b-4e7f-9a61-3b8c2d4e5f60"


def sample_spec(name: str = "demo", cidr: str = "10.20.0.0/16", **changes: object) -> ClusterSpec:
    spec = ClusterSpec(
        name=name,
        region="us-east-1",
        kubernetes_version="v1.31.2",
        network=NetworkSpec(cidr=cidr, zones=3, nat_gateways="single", endpoints=("s3", "sts")),
        bastion=BastionSpec(enabled=True, allowed_cidrs=("203.0.113.0/24",), instance_type="t3.micro"),
        control_plane=ControlPlaneSpec(replicas=3, instance_type="m6i.large"),
        workers=(
            WorkerPool(name="default", replicas=3, instance_type="m6i.large"),
            WorkerPool(name="batch", replicas=2, instance_type="c6i.xlarge"),
        ),
        ssh_key_name="ops",
        tags={"cost-center": "42", "team": "platform"},
    )
    return spec.model_copy(update=changes)


def sample_outputs(cidr: str = "10.20.0.0/16", vpc_id: str = "vpc-0abc1234") -> NetworkOutputs:
    blocks = list(ipaddress.ip_network(cidr).subnets(new_prefix=20))
    subnets = tuple(
        Subnet(
            id=f"subnet-{'pub' if public else 'prv'}{i}",
            cidr=str(blocks[i + (3 if public else 0)]),
            zone=zone,
            public=public,
        )
        for public in (False, True)
        for i, zone in enumerate(ZONES)
    )
    return NetworkOutputs(
        region="us-east-1",
        vpc_id=vpc_id,
        vpc_cidr=cidr,
        subnets=subnets,
        nat_gateway_ids=("nat-0abc",),
        endpoint_ids=(("s3", "vpce-0s3"), ("sts", "vpce-0sts")),
        bastion=None,
        secrets_key_arn=SECRETS_KEY_ARN,
        audit_log_group="/fleet-pipeline/demo/kube-apiserver-audit",
    )


@functools.cache
def schemas_from(directory: str) -> Schemas:
    """The CRD schemas of a directory, parsed once per test session."""
    return from_directory(Path(directory))
