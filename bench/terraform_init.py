"""Benchmark: a new cluster's `terraform init` with the shared plugin cache, against none.

The provider is served from a *packed* mirror (a zip, as `terraform providers mirror` writes
it). Without a cache every cluster's data dir gets its own ~675 MB provider (the baseline);
with the project's CLI config the first cluster fills the shared cache and every cluster only
links to it. Prints one JSON line: seconds and bytes written to each data dir, and the ratios
against the baseline. Run: `.venv/bin/python bench/terraform_init.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from bench.harness import moto_server
from pipeline import aws, network, terraform
from pipeline.config import load_settings
from pipeline.model import AwsAccess

UNPACKED = Path("/opt/tf-plugins/registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64")


def packed_mirror(root: Path) -> Path:
    target = root / "registry.terraform.io" / "hashicorp" / "aws"
    target.mkdir(parents=True)
    with zipfile.ZipFile(target / "terraform-provider-aws_5.100.0_linux_amd64.zip", "w") as archive:
        for item in sorted(UNPACKED.iterdir()):
            archive.write(item, item.name, compress_type=zipfile.ZIP_STORED)
    return root


def data_dir_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink() and p.is_file())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with moto_server(root / "endpoint") as endpoint:
            env = {
                **os.environ,
                "PIPELINE_STATE_DIR": str(root / "state"),
                "PIPELINE_PROVIDER_MIRROR": str(packed_mirror(root / "mirror")),
                "PIPELINE_PLUGIN_CACHE": str(root / "cache"),
            }
            settings = load_settings(env, root)
            access = AwsAccess(
                "us-east-1", endpoint, (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"))
            )
            aws.ensure_state_bucket(access, "bench-state")
            no_cache = root / "no-cache.tfrc"
            no_cache.write_text(
                f'provider_installation {{\n  filesystem_mirror {{\n    path = "{root / "mirror"}"\n  }}\n}}\n'
            )
            result: dict[str, float] = {}
            for label, cluster in (("baseline", "uncached"), ("cold", "first"), ("warm", "second")):
                ws = terraform.workspace(settings, cluster, network.STACK, dict(access.env))
                if label == "baseline":
                    env_items = dict(ws.env) | {"TF_CLI_CONFIG_FILE": str(no_cache)}
                    ws = dataclasses.replace(ws, env=tuple(sorted(env_items.items())))
                started = time.perf_counter()
                terraform.init(ws, network.backend_config("bench-state", network.state_key(cluster), access))
                result[f"{label}_seconds"] = round(time.perf_counter() - started, 2)
                result[f"{label}_data_dir_bytes"] = data_dir_bytes(ws.work_dir / ".terraform")
            for label in ("cold", "warm"):
                result[f"{label}_seconds_over_baseline"] = round(
                    result[f"{label}_seconds"] / result["baseline_seconds"], 3
                )
                result[f"{label}_bytes_over_baseline"] = round(
                    result[f"{label}_data_dir_bytes"] / result["baseline_data_dir_bytes"], 6
                )
            print(json.dumps(result, sort_keys=True))
        shutil.rmtree(root / "cache", ignore_errors=True)


if __name__ == "__main__":
    main()
