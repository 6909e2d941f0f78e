"""Bare Terraform, the reference the pipeline's own runs are held against: init plus apply, then plan.

The same stack, the same variables as the pipeline writes them, the same S3 backend kind, the same
provider mirror and plugin cache, on an endpoint of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import moto_server
from pipeline import allocation, aws, local_endpoint, network, node_iam, spec, spec_source, terraform
from pipeline.config import load_settings


@dataclass(frozen=True)
class Bare:
    init_apply_s: float
    plan_s: float


def bare(root: Path, plugin_cache: Path, name: str) -> Bare:
    """`terraform init` + `apply` of the cluster stack from nothing, then a `plan` that finds nothing to do."""
    with moto_server(root / "endpoint") as url:
        settings = load_settings({"PIPELINE_PLUGIN_CACHE": str(plugin_cache), "PIPELINE_AWS_ENDPOINT": url}, root)
        parsed = spec.parse(spec_source.load(name, None), name)
        cluster = allocation.place(parsed, allocation.Known(frozenset(), None))
        access = local_endpoint.access(local_endpoint.Endpoint(url, None, running=True), cluster.region)
        zones = network.preflight(cluster, access)
        bucket = network.state_bucket(settings, aws.caller_identity(access), cluster.region)
        aws.ensure_state_bucket(access, bucket)
        # The account's roles, which the cluster stack names, exist before any cluster's network (untimed).
        node_iam.ensure(settings)
        copy = root / "terraform"
        shutil.copytree(settings.terraform_dir, copy, ignore=shutil.ignore_patterns(".terraform"))
        stack = copy / "stacks" / network.STACK
        cli_config = root / "cli.tfrc"
        cli_config.write_text(terraform.cli_config_text(terraform.find_mirror(settings), plugin_cache))
        var_file = root / network.VAR_FILE
        var_file.write_text(json.dumps(network.variables(cluster, zones, access), indent=2, sort_keys=True))
        env = {
            **os.environ,
            **dict(access.env),
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_DATA_DIR": str(root / "data"),
            "TF_IN_AUTOMATION": "1",
        }
        backend = network.backend_config(bucket, network.state_key(name), access)

        def tf(*args: str) -> None:
            subprocess.run(["terraform", f"-chdir={stack}", *args], env=env, check=True, capture_output=True)

        started = time.perf_counter()
        tf("init", "-input=false", *(f"-backend-config={k}={v}" for k, v in backend.items()))
        tf("apply", "-input=false", "-auto-approve", f"-var-file={var_file}")
        applied = time.perf_counter()
        tf("plan", "-input=false", "-detailed-exitcode", f"-var-file={var_file}")
        planned = time.perf_counter()
    return Bare(applied - started, planned - applied)
