"""The account's part of the network stage: the IAM roles and instance profiles every cluster's machines run as.

IAM is global to an AWS account, so one Terraform stack with its own state serves every cluster.
A run reads that state straight from the bucket and calls Terraform only when the state is
missing or was built from other inputs, so a fleet of clusters pays for it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import access as target_access
from pipeline import aws, network, state_lock, terraform
from pipeline.config import Settings
from pipeline.errors import RunInProgress, TerraformError
from pipeline.iam_names import CONTROL_PLANE_PROFILE, NODES_PROFILE
from pipeline.model import AwsAccess

STACK = "account"
MODULE = "node-iam"
STATE_KEY = "account/node-iam.tfstate"
# Not a cluster's work dir: cluster names start with a letter.
WORK_DIR = "_account"
VAR_FILE = "account.tfvars.json"
# Runs that find the stack missing at the same time apply it in turn; the later ones plan nothing.
_LOCK_TIMEOUT = "120s"


@dataclass(frozen=True)
class NodeIam:
    control_plane_profile: str
    nodes_profile: str
    applied: bool  # whether this run ran Terraform on the stack, finding it missing or built from other inputs


def ensure(settings: Settings, on_line: terraform.LineSink | None = None) -> NodeIam:
    """The account's node IAM as the stack builds it, applied first when its state is missing or stale."""
    access = target_access.for_target(settings, settings.account_region)
    bucket = state_bucket(settings, access)
    values = variables(settings, access.endpoint)
    built = _built(aws.read_state(access, bucket, STATE_KEY), str(values["inputs_digest"]))
    if built is not None:
        return built
    work_dir = settings.terraform_work_dir(WORK_DIR)
    work_dir.mkdir(parents=True, exist_ok=True)
    with _machine_lock(work_dir):
        aws.ensure_state_bucket(access, bucket)
        unlock = state_lock.Scope(None, settings.target)
        ws = terraform.workspace(settings, WORK_DIR, STACK, dict(access.env), unlock=unlock)
        var_file = ws.work_dir / VAR_FILE
        var_file.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        terraform.init(ws, network.backend_config(bucket, STATE_KEY, access), on_line)
        # Nothing here is a cluster's to review: the stack is the same for every account.
        terraform.apply_unreviewed(ws, var_file, on_line, lock_timeout=_LOCK_TIMEOUT)
        out = terraform.state_of(aws.read_state(access, bucket, STATE_KEY)).outputs.values
    try:
        return NodeIam(str(out["control_plane_profile"]), str(out["nodes_profile"]), applied=True)
    except KeyError as e:
        raise TerraformError(
            f"the '{STACK}' stack's outputs lack {e}; the stack and this pipeline are out of step"
        ) from None


def state_bucket(settings: Settings, access: AwsAccess) -> str:
    """Where the stack's state is kept: PIPELINE_ACCOUNT_STATE_BUCKET, else derived from the account."""
    return network.checked_bucket(
        settings.account_state_bucket or network.default_bucket(aws.caller_identity(access), access.region),
        "PIPELINE_ACCOUNT_STATE_BUCKET",
    )


def variables(settings: Settings, endpoint: str | None) -> dict[str, object]:
    inputs: dict[str, object] = {
        "region": settings.account_region,
        "control_plane_name": CONTROL_PLANE_PROFILE,
        "nodes_name": NODES_PROFILE,
    }
    # The endpoint is left out of the digest: the local endpoint's address changes between sessions.
    return inputs | {"inputs_digest": _digest(settings.terraform_dir, inputs), "aws_endpoint": endpoint}


def _digest(terraform_dir: Path, inputs: Mapping[str, object]) -> str:
    """What the stack would build from: its files, its module's, and the variables."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
    for folder in (terraform_dir / "stacks" / STACK, terraform_dir / "modules" / MODULE):
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            digest.update(f"{folder.name}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _built(state: Mapping[str, Any] | None, digest: str) -> NodeIam | None:
    """The profiles a state built from these very inputs names; None when it was built from others."""
    outputs = (state or {}).get("outputs") or {}
    try:
        if outputs["inputs_digest"]["value"] != digest:
            return None
        return NodeIam(outputs["control_plane_profile"]["value"], outputs["nodes_profile"]["value"], applied=False)
    except (KeyError, TypeError):
        return None


@contextmanager
def holding(settings: Settings) -> Iterator[None]:
    """The stack held for this process, as a run holds it while applying; refused while a run here does."""
    work_dir = settings.terraform_work_dir(WORK_DIR)
    work_dir.mkdir(parents=True, exist_ok=True)
    with _machine_lock(work_dir, wait=False):
        yield


@contextmanager
def _machine_lock(work_dir: Path, *, wait: bool = True) -> Iterator[None]:
    """Runs on one machine share the stack's work dir; Terraform's lock guards the state, not that."""
    with (work_dir / ".pipeline-account.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgress(
                f"the '{STACK}' stack is being applied by a run on this machine; wait for it to finish"
            ) from None
        yield
