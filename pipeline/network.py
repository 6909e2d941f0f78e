"""The network stage: a cluster's VPC, subnets, NAT, endpoints and bastion, built by Terraform."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import aws, journal, machine_image, state_lock, terraform
from pipeline.config import Settings
from pipeline.errors import BadInput, OrphanedResources, PlanDiffers, SpecError, TerraformError
from pipeline.iam_names import CONTROL_PLANE_PROFILE
from pipeline.model import (
    AwsAccess,
    Bastion,
    NetworkOutputs,
    NetworkPlan,
    NetworkResult,
    PlanSummary,
    Subnet,
    fingerprint,
)
from pipeline.spec import ClusterSpec

STACK = "cluster"
VAR_FILE = "network.tfvars.json"
STATE_LOCATION = "state-location.json"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PLAN_HASH = re.compile(r"sha256:[0-9a-f]{64}")
# CAPA's AWSCluster names the VPC and subnets by id, and vpc.id is immutable.
_NETWORK_TYPES = ("aws_vpc", "aws_subnet")
_LOSSES = ("destroy", "replace")
_READ_OUTPUTS = frozenset(
    {
        "region", "vpc_id", "vpc_cidr", "subnets", "nat_gateway_ids", "endpoint_ids", "bastion", "secrets_key_arn",
        "audit_log_group",
    }
)  # fmt: skip

LineSink = Callable[[str], None]


def provision(
    spec: ClusterSpec,
    access: AwsAccess,
    settings: Settings,
    on_line: LineSink | None = None,
    *,
    force: bool = False,
    done: NetworkCheckpoint | None = None,
    zones: tuple[str, ...] | None = None,
    expect_plan: str | None = None,
    before_apply: Callable[[], object] | None = None,
) -> NetworkResult:
    """Bring the cluster's network to match the spec; unchanged inputs plan nothing and apply nothing.

    A plan that would replace or destroy the VPC or a subnet is refused unless `force`: the
    running cluster's manifests name them by id. `done` is what an unfinished run journaled
    for this stage from the same spec: while the state is still at the serial it recorded,
    its outputs are taken as they are, without planning again. `zones` are those `preflight` gave,
    when the caller ran it already. With `expect_plan`, the plan is saved to a file and applied
    only when it hashes to `expect_plan` (`plan_hash`), and then exactly that file is applied,
    after `before_apply`; an unfinished run's network is not taken as it is, as nothing tells
    which plan it applied.
    """
    account = aws.caller_identity(access)
    zones = zones or preflight(spec, access)
    bucket = state_bucket(settings, account, access.region)
    ws = terraform.workspace(settings, spec.name, STACK, dict(access.env), unlock=_unlock(settings, spec.name, access))
    _keep_state_location(ws.work_dir, spec.name, bucket, account)
    aws.ensure_state_bucket(access, bucket)
    var_file = _write_variables(ws.work_dir, variables(spec, zones, access))
    terraform.init(ws, backend_config(bucket, state_key(spec.name), access), on_line)
    state = _stored_state(access, bucket, spec.name)
    if done is not None and expect_plan is None:
        reused = _reuse(state, done)
        if reused is not None:
            return reused
    _refuse_orphans(spec.name, state, access)
    if expect_plan is None and not any(r.get("mode") == "managed" for r in state.resources):
        # Nothing built yet, so nothing a plan could lose: one apply plans and builds, as bare Terraform does.
        created = terraform.apply_unreviewed(ws, var_file, on_line)
        state = _stored_state(access, bucket, spec.name)
        return NetworkResult(network_outputs(state.outputs), created, state.serial, resources=state.resources)
    plan = terraform.plan(ws, var_file, on_line)
    if expect_plan is not None:
        _refuse_unreviewed(spec, plan, expect_plan)
    lost = _network_losses(plan.resources)
    if lost and not force:
        raise BadInput(_replacement_refused(lost))
    if before_apply is not None:
        before_apply()
    if plan.changed:
        terraform.apply(ws, plan, on_line)
        state = _stored_state(access, bucket, spec.name)
    # A plan without changes leaves the state, and so its outputs, as they were pulled.
    return NetworkResult(network_outputs(state.outputs), plan.summary, state.serial, resources=state.resources)


def plan_hash(spec: ClusterSpec, terraform_digest: str) -> str:
    """What new-cluster would apply for `spec`, hashed: Terraform's planned changes and the spec that the
    manifests are rendered from (the manifests themselves need the network's ids, known after apply)."""
    return fingerprint({"spec": spec.fingerprint(), "terraform": terraform_digest})


def checked_plan_hash(text: str | None) -> str | None:
    if text is not None and not _PLAN_HASH.fullmatch(text):
        raise BadInput(
            f"--expect-plan {text!r} is not a plan hash; pass the sha256:<64 hex digits> that `plan` printed"
        )
    return text


def _refuse_unreviewed(spec: ClusterSpec, saved: terraform.Plan, expected: str) -> None:
    found = plan_hash(spec, saved.digest)
    if found != expected:
        raise PlanDiffers(
            f"cluster '{spec.name}': the plan about to be applied hashes {found}, not the reviewed {expected}; "
            "the spec, the fleet or the network changed since that plan; nothing was applied: plan again and review it"
        )


def _stored_state(access: AwsAccess, bucket: str, cluster: str) -> terraform.State:
    """The cluster's state as the backend keeps it, read from the bucket: a GET, not a Terraform process."""
    return terraform.state_of(aws.read_state(access, bucket, state_key(cluster)))


@dataclass(frozen=True)
class Orphans:
    """What AWS holds tagged for a cluster that its state does not: left by an apply stopped before it saved."""

    resources: tuple[tuple[str, tuple[str, ...]], ...]  # (Terraform type, ids), in aws.ORPHAN_TYPES order

    def __bool__(self) -> bool:
        return any(ids for _, ids in self.resources)

    def __str__(self) -> str:
        return ", ".join(f"{kind} {' '.join(ids)}" for kind, ids in self.resources if ids)


def orphans(name: str, state: terraform.State, access: AwsAccess) -> Orphans:
    tracked = state.tracked_ids(aws.ORPHAN_TYPES)
    live = aws.tagged_resources(access, name)
    return Orphans(
        tuple((kind, tuple(i for i in live[kind] if i not in tracked.get(kind, ()))) for kind in aws.ORPHAN_TYPES)
    )


def _refuse_orphans(name: str, state: terraform.State, access: AwsAccess) -> None:
    """Applying beside orphans would build a second network; the user decides what to do with them."""
    found = orphans(name, state, access)
    if found:
        raise OrphanedResources(
            f"{found}: tagged for cluster '{name}' but not in its Terraform state (an apply was stopped "
            f"before saving them); remove them with: python -m pipeline remove-orphans {name}"
        )


def remove_orphans(
    name: str, region: str, access: AwsAccess, settings: Settings, on_line: LineSink | None = None
) -> Orphans:
    """Delete what AWS holds tagged for the cluster outside its state; what was removed."""
    account = aws.caller_identity(access)
    bucket = state_bucket(settings, account, region)
    _check_state_location(settings.terraform_work_dir(name), name, bucket, account)
    ws = terraform.workspace(settings, name, STACK, dict(access.env))
    terraform.init(ws, backend_config(bucket, state_key(name), access), on_line)
    found = orphans(name, terraform.pulled(ws), access)
    aws.delete_resources(access, dict(found.resources))
    return found


@dataclass(frozen=True)
class NetworkCheckpoint:
    """What the network stage leaves in the run journal: while the state is still at `state_serial`
    and its outputs fingerprint to `outputs`, a later run of the same spec takes the network as it is."""

    vpc: str
    changes: PlanSummary
    state_serial: int
    outputs: str  # the outputs' fingerprint

    @classmethod
    def of(cls, result: NetworkResult) -> NetworkCheckpoint:
        return cls(result.outputs.vpc_id, result.changes, result.state_serial, result.outputs.fingerprint())

    def to_json(self) -> dict[str, Any]:
        changes = {"add": self.changes.add, "change": self.changes.change, "destroy": self.changes.destroy}
        return {"vpc": self.vpc, "changes": changes, "state_serial": self.state_serial, "outputs": self.outputs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkCheckpoint:
        changes = journal.mapping(data, "changes")
        return cls(
            vpc=journal.text(data, "vpc"),
            changes=PlanSummary(
                journal.integer(changes, "add"), journal.integer(changes, "change"), journal.integer(changes, "destroy")
            ),
            state_serial=journal.integer(data, "state_serial"),
            outputs=journal.text(data, "outputs"),
        )


def _reuse(state: terraform.State, done: NetworkCheckpoint) -> NetworkResult | None:
    if state.serial != done.state_serial:
        return None
    outputs = network_outputs(state.outputs)
    if outputs.fingerprint() != done.outputs:
        return None
    return NetworkResult(outputs, PlanSummary(0, 0, 0), state.serial, reused=True, resources=state.resources)


def plan(spec: ClusterSpec, access: AwsAccess, settings: Settings, on_line: LineSink | None = None) -> NetworkPlan:
    """What `provision` would change, found without writing anything but a temporary directory.

    The plan runs on a copy of the stack in a temporary directory, without taking the state
    lock. A cluster without state (no bucket or no state object yet) is planned against an empty
    local state, so no bucket is created and nothing is recorded under the state dir.
    """
    account = aws.caller_identity(access)
    zones = preflight(spec, access)
    bucket = state_bucket(settings, account, access.region)
    _check_state_location(settings.terraform_work_dir(spec.name), spec.name, bucket, account)
    has_state = aws.state_exists(access, bucket, state_key(spec.name))
    with tempfile.TemporaryDirectory(prefix=f"plan-{spec.name}-") as root:
        ws = terraform.scratch_workspace(settings, STACK, Path(root), dict(access.env), local_backend=not has_state)
        var_file = _write_variables(ws.work_dir, variables(spec, zones, access))
        terraform.init(ws, backend_config(bucket, state_key(spec.name), access) if has_state else {}, on_line)
        saved = terraform.plan(ws, var_file, on_line, lock=False)
        # From the stored state: the plan's own view re-evaluates outputs with the new variables.
        current = terraform.outputs(ws) if has_state else None
    return NetworkPlan(
        summary=saved.summary,
        resources=tuple((r.address, r.action) for r in saved.resources),
        replaces_network=tuple(r.address for r in _network_losses(saved.resources)),
        outputs=network_outputs(current) if current and current.values else None,
        planned=saved.planned,
        digest=saved.digest,
    )


def destroy(name: str, region: str, access: AwsAccess, settings: Settings, on_line: LineSink | None = None) -> bool:
    """Destroy the cluster's network, then its state and work dir; False when it has no state.

    Idempotent: once the state is gone there is nothing to destroy. The state's versions are
    deleted only after Terraform destroyed everything it held.
    """
    account = aws.caller_identity(access)
    bucket = state_bucket(settings, account, region)
    _check_state_location(settings.terraform_work_dir(name), name, bucket, account)
    if not aws.state_exists(access, bucket, state_key(name)):
        return False
    ws = terraform.workspace(settings, name, STACK, dict(access.env), unlock=_unlock(settings, name, access))
    terraform.init(ws, backend_config(bucket, state_key(name), access), on_line)
    var_file = _write_variables(ws.work_dir, _applied_variables(ws, name, access))
    terraform.destroy(ws, var_file, on_line)
    for key in (state_key(name), lock_key(name), journal_key(name)):
        aws.delete_state(access, bucket, key)
    shutil.rmtree(ws.work_dir)
    return True


def _applied_variables(ws: terraform.Workspace, name: str, access: AwsAccess) -> dict[str, object]:
    """The variables the state was built with, good enough to destroy it.

    The var file this machine last wrote, else (another machine, or CI) rebuilt from the
    state's outputs: destroying needs no spec, only values that evaluate. The endpoint is
    always today's: the local endpoint's address changes between sessions.
    """
    var_file = ws.work_dir / VAR_FILE
    if var_file.exists():
        known: dict[str, object] = json.loads(var_file.read_text())
    else:
        raw = terraform.outputs(ws)
        if not raw.values:
            raise TerraformError(
                f"cannot destroy cluster '{name}': its state has no outputs and {var_file} is missing; "
                "run new-cluster once to complete the network, then delete it"
            )
        out = network_outputs(raw)
        zones = sorted({s.zone for s in out.subnets})
        known = {"cluster_name": name, "region": out.region, "vpc_cidr": out.vpc_cidr, "zones": zones}
    return known | {"aws_endpoint": access.endpoint}


def recorded_region(settings: Settings, name: str) -> str | None:
    """The region of the cluster's last Terraform run on this machine, from its variables; None without one."""
    try:
        region = json.loads((settings.terraform_work_dir(name) / VAR_FILE).read_text()).get("region")
    except (OSError, ValueError, AttributeError):
        return None
    return region if isinstance(region, str) and region else None


def _write_variables(work_dir: Path, values: Mapping[str, object]) -> Path:
    var_file = work_dir / VAR_FILE
    var_file.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return var_file


def _network_losses(resources: Sequence[terraform.ResourceChange]) -> tuple[terraform.ResourceChange, ...]:
    return tuple(r for r in resources if r.type in _NETWORK_TYPES and r.action in _LOSSES and not r.tainted)


def _replacement_refused(lost: Sequence[terraform.ResourceChange]) -> str:
    verbs = " and ".join(sorted({r.action for r in lost}))
    return (
        f"{_cause(lost)}: Terraform would {verbs} {', '.join(r.address for r in lost)} under a running cluster; "
        "CAPA's vpc.id is immutable and its AWSCluster names every subnet by id; "
        "pass --force to accept, after moving workloads off"
    )


def _cause(lost: Sequence[terraform.ResourceChange]) -> str:
    """The spec change behind the loss, in the spec's own terms where it can be told."""
    for change in lost:
        for attribute, before, after in change.replaced_by:
            if change.type == "aws_vpc" and attribute == "cidr_block":
                return f"network.cidr changed ({before} -> {after})"
    if all(r.action == "destroy" for r in lost):
        return "network.zones lowered"
    forced = sorted({f"{r.type}.{a} ({b} -> {c})" for r in lost for a, b, c in r.replaced_by})
    return f"the network changed: {', '.join(forced) or 'see terraform plan'}"


def _keep_state_location(work_dir: Path, cluster: str, bucket: str, account: str) -> None:
    """Refuse to move a cluster's state silently.

    Init runs with -reconfigure, so a different bucket would start from empty state and the
    apply would build a second network beside the first.
    """
    wanted = _check_state_location(work_dir, cluster, bucket, account)
    record = work_dir / STATE_LOCATION
    if not record.exists():
        record.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def _check_state_location(work_dir: Path, cluster: str, bucket: str, account: str) -> dict[str, str]:
    """The location record this bucket and account make; BadInput when the work dir records another."""
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
    return wanted


def state_bucket(settings: Settings, account_id: str, region: str) -> str:
    return checked_bucket(settings.state_bucket or default_bucket(account_id, region), "PIPELINE_STATE_BUCKET")


def default_bucket(account_id: str, region: str) -> str:
    return f"fleet-pipeline-tfstate-{account_id}-{region}"


def checked_bucket(name: str, variable: str) -> str:
    if not _BUCKET_NAME.match(name) or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise BadInput(
            f"state bucket name '{name}' is not a valid S3 bucket name; "
            f"set {variable} to 3-63 lowercase letters, digits, dots and hyphens"
        )
    return name


def state_key(cluster: str) -> str:
    return f"clusters/{cluster}/network.tfstate"


def lock_key(cluster: str) -> str:
    return state_lock.lock_file(state_key(cluster))


def journal_key(cluster: str) -> str:
    """The cluster's last run record beside its state: one small object per cluster, read and written by key."""
    return f"clusters/{cluster}/run.json"


def _unlock(settings: Settings, cluster: str, access: AwsAccess) -> state_lock.Scope:
    """The cluster's lock as a lock error names it: with its region, so `unlock` needs no run's record to find it."""
    return state_lock.Scope(cluster, settings.target, access.region)


def backend_config(bucket: str, key: str, access: AwsAccess) -> dict[str, str]:
    config = {
        "bucket": bucket,
        "key": key,
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
        "vpc_cidr": spec.vpc_cidr,
        "zones": list(zones),
        "nat_gateways": spec.network.nat_gateways,
        "endpoints": sorted(spec.network.endpoints),
        "bastion_enabled": spec.bastion.enabled,
        "bastion_allowed_cidrs": list(spec.bastion.allowed_cidrs),
        "bastion_instance_type": spec.bastion.instance_type,
        "bastion_mode": spec.bastion.mode,
        "ssh_key_name": spec.ssh_key_name,
        "flow_log_retention_days": spec.network.flow_log_retention_days,
        "audit_log_retention_days": spec.control_plane.audit_log_retention_days,
        "control_plane_role_name": CONTROL_PLANE_PROFILE,
        "tags": dict(spec.tags),
        "aws_endpoint": access.endpoint,
    }


def network_outputs(stack: terraform.Outputs) -> NetworkOutputs:
    raw = stack.values
    taken = sorted(stack.sensitive & _READ_OUTPUTS)
    if taken:
        raise TerraformError(
            f"the '{STACK}' stack marks output {', '.join(taken)} sensitive, and manifests are made from it; "
            "a sensitive value never reaches the fleet repo: keep it out of the outputs the pipeline reads"
        )
    try:
        # Terraform's state leaves out an output whose value is null, as the bastion's is when disabled.
        bastion = raw.get("bastion")
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
            secrets_key_arn=str(raw["secrets_key_arn"]),
            audit_log_group=str(raw["audit_log_group"]),
            sensitive=tuple(sorted(stack.sensitive)),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise TerraformError(
            f"the '{STACK}' stack's outputs lack {e}; the stack and this pipeline are out of step"
        ) from None


def preflight(spec: ClusterSpec, access: AwsAccess) -> tuple[str, ...]:
    """What AWS can tell of the spec before anything is written: the zones it gets, and that its image boots."""
    zones = _zones(spec, access)
    machine_image.check(spec, access)
    return zones


def _zones(spec: ClusterSpec, access: AwsAccess) -> tuple[str, ...]:
    available = aws.zones(access)
    wanted = spec.network.zones
    if wanted > len(available):
        raise SpecError(
            "network.zones",
            f"{wanted} zones asked for but {access.region} has {len(available)} available",
            f"use at most {len(available)}",
        )
    chosen = available[:wanted]
    # A pool's zones are known to be the network's only here, before Terraform runs.
    for index, pool in enumerate(spec.workers):
        for at, zone in enumerate(pool.zones or ()):
            if zone not in chosen:
                raise SpecError(
                    f"workers[{index}].zones[{at}]",
                    f"{zone} is not one of the network's zones ({', '.join(chosen)})",
                    "list zones of the network, or leave zones out to span them all",
                )
    return chosen
