"""The network stage: a cluster's VPC, subnets, NAT, endpoints and bastion, built by Terraform."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline import aws, terraform
from pipeline.config import Settings
from pipeline.errors import BadInput, SpecError, TerraformError
from pipeline.model import AwsAccess, Bastion, ClusterSpec, NetworkOutputs, NetworkResult, Subnet

STACK = "cluster"
VAR_FILE = "network.tfvars.json"
STATE_LOCATION = "state-location.json"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def provision(
    spec: ClusterSpec,
    access: AwsAccess,
    settings: Settings,
    on_line: Callable[[str], None] | None = None,
) -> NetworkResult:
    """Bring the cluster's network to match the spec; unchanged inputs plan nothing and apply nothing."""
    account = aws.caller_identity(access)
    zones = _zones(spec, access)
    bucket = state_bucket(settings, account, access.region)
    ws = terraform.workspace(settings, spec.name, STACK, dict(access.env))
    _keep_state_location(ws.work_dir, spec.name, bucket, account)
    aws.ensure_state_bucket(access, bucket)
    var_file = ws.work_dir / VAR_FILE
    var_file.write_text(json.dumps(variables(spec, zones, access), indent=2, sort_keys=True) + "\n")
    terraform.init(ws, backend_config(bucket, spec.name, access), on_line)
    plan = terraform.plan(ws, var_file, on_line)
    if plan.changed:
        terraform.apply(ws, plan, on_line)
    return NetworkResult(
        outputs=network_outputs(terraform.outputs(ws)),
        changes=plan.summary,
        state_serial=terraform.state_serial(ws),
    )


def _keep_state_location(work_dir: Path, cluster: str, bucket: str, account: str) -> None:
    """Refuse to move a cluster's state silently.

    Init runs with -reconfigure, so a different bucket would start from empty state and the
    apply would build a second network beside the first.
    """
    record = work_dir / STATE_LOCATION
    wanted = {"account": account, "bucket": bucket, "key": state_key(cluster)}
    if record.exists():
        known = json.loads(record.read_text())
        if known != wanted:
            raise BadInput(
                f"cluster '{cluster}' keeps its Terraform state in s3://{known['bucket']}/{known['key']} "
                f"(account {known['account']}), not s3://{bucket}/{wanted['key']} (account {account}); "
                "set PIPELINE_STATE_BUCKET and your credentials back, or move the state with "
                f"`terraform init -migrate-state` and delete {record}"
            )
        return
    record.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def state_bucket(settings: Settings, account_id: str, region: str) -> str:
    name = settings.state_bucket or f"fleet-pipeline-tfstate-{account_id}-{region}"
    if not _BUCKET_NAME.match(name) or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise BadInput(
            f"state bucket name '{name}' is not a valid S3 bucket name; "
            "set PIPELINE_STATE_BUCKET to 3-63 lowercase letters, digits, dots and hyphens"
        )
    return name


def state_key(cluster: str) -> str:
    return f"clusters/{cluster}/network.tfstate"


def backend_config(bucket: str, cluster: str, access: AwsAccess) -> dict[str, str]:
    config = {
        "bucket": bucket,
        "key": state_key(cluster),
        "region": access.region,
        "use_lockfile": "true",
        "encrypt": "true",
    }
    if access.endpoint is not None:
        config |= {
            "endpoints": f"{{s3={json.dumps(access.endpoint)}}}",
            "use_path_style": "true",
            "skip_credentials_validation": "true",
            "skip_requesting_account_id": "true",
            "skip_metadata_api_check": "true",
            "skip_region_validation": "true",
        }
    return config


def variables(spec: ClusterSpec, zones: tuple[str, ...], access: AwsAccess) -> dict[str, object]:
    return {
        "cluster_name": spec.name,
        "region": spec.region,
        "vpc_cidr": spec.network.cidr,
        "zones": list(zones),
        "nat_gateways": spec.network.nat_gateways,
        "endpoints": sorted(spec.network.endpoints),
        "bastion_enabled": spec.bastion.enabled,
        "bastion_allowed_cidrs": list(spec.bastion.allowed_cidrs),
        "bastion_instance_type": spec.bastion.instance_type,
        "ssh_key_name": spec.ssh_key_name,
        "tags": dict(spec.tags),
        "aws_endpoint": access.endpoint,
    }


def network_outputs(raw: Mapping[str, Any]) -> NetworkOutputs:
    try:
        bastion = raw["bastion"]
        return NetworkOutputs(
            region=str(raw["region"]),
            vpc_id=str(raw["vpc_id"]),
            vpc_cidr=str(raw["vpc_cidr"]),
            subnets=tuple(
                sorted(
                    (Subnet(s["id"], s["cidr"], s["zone"], bool(s["public"])) for s in raw["subnets"]),
                    key=lambda s: (s.public, s.zone),
                )
            ),
            nat_gateway_ids=tuple(raw["nat_gateway_ids"]),
            endpoint_ids=tuple(sorted(raw["endpoint_ids"].items())),
            bastion=None
            if bastion is None
            else Bastion(bastion["instance_id"], bastion["security_group_id"], bastion["public_ip"]),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise TerraformError(
            f"the '{STACK}' stack's outputs lack {e}; the stack and this pipeline are out of step"
        ) from None


def _zones(spec: ClusterSpec, access: AwsAccess) -> tuple[str, ...]:
    available = aws.zones(access)
    wanted = spec.network.zones
    if wanted > len(available):
        raise SpecError(
            "network.zones",
            f"{wanted} zones asked for but {access.region} has {len(available)} available",
            f"use at most {len(available)}",
        )
    return available[:wanted]
