"""`python -m bench [--quick] [--json FILE]`: each figure of the pipeline against its baseline, in one run.

Prints a table; with --json writes the figures by key. Run it after the README's set-up, from the repo root.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import fleet_scale, render_rate, terraform_ratio
from bench.harness import Home, moto_server, pipeline

CLUSTER = "bench"
# Targets the issue set; the table says which figures meet them.
TARGETS = {
    "overhead_ratio": ("<=", 1.10),
    "noop_ratio": ("<=", 1.25),
    "render_clusters_per_s": (">=", 200),
    "fleet_noop_s_1000": ("<=", 3.0),
    "list_s_1000": ("<=", 5.0),
    "verify_s_1000": ("<=", 20.0),
    "clones_per_run": ("<=", 1),
    "peak_rss_mb_1000": ("<=", 300),
}


@dataclass(frozen=True)
class Scale:
    fleets: tuple[int, int]  # clusters on main for the two no-op runs; list and verify run on the larger
    rendered: int  # distinct clusters rendered and validated


FULL = Scale((100, 1000), 300)
QUICK = Scale((100, 1000), 100)
SMOKE = Scale((5, 20), 5)  # CI's: every measure runs, on fleets too small to mean anything


def measure(root: Path, scale: Scale) -> dict[str, float]:
    plugin_cache = root / "plugins"
    figures: dict[str, float] = {}
    reference = terraform_ratio.bare(_dir(root / "bare"), plugin_cache, CLUSTER)
    with moto_server(_dir(root / "endpoint")) as url:
        home = Home(_dir(root / "pipeline"), url, plugin_cache)
        first = pipeline(home, "new-cluster", CLUSTER)
        again = pipeline(home, "new-cluster", CLUSTER)
        # The account's node IAM exists now: what every cluster after an account's first one costs.
        next_one = pipeline(home, "new-cluster", f"{CLUSTER}-next")
        figures["overhead_ratio"] = first.seconds / reference.init_apply_s
        figures["overhead_ratio_next_cluster"] = next_one.seconds / reference.init_apply_s
        figures["noop_ratio"] = again.seconds / reference.plan_s
        runs = [first, again, next_one]
        small, large = scale.fleets
        for start, size in ((0, small), (small, large)):
            fleet_scale.grow(home, range(start, size))
            # Measured once a run has seen the fleet, as every run but the first after a change would find it.
            runs.append(pipeline(home, "new-cluster", CLUSTER))
            noop = pipeline(home, "new-cluster", CLUSTER)
            runs.append(noop)
            # Everything but Terraform: the network stage is the one that runs it.
            figures[f"fleet_noop_s_{size}"] = noop.seconds - noop.stages.get("network", 0.0)
        figures[f"peak_rss_mb_{large}"] = runs[-1].peak_rss_mb
        figures["clones_per_run"] = max(run.clones for run in runs)
        figures[f"list_s_{large}"] = pipeline(home, "list", "--json").seconds
        branch = fleet_scale.change_one(home, 1)
        figures[f"verify_s_{large}"] = pipeline(home, "verify", "--ref", branch).seconds
    figures["render_clusters_per_s"] = render_rate.clusters_per_second(scale.rendered)
    figures["baseline_init_apply_s"] = reference.init_apply_s
    figures["baseline_plan_s"] = reference.plan_s
    figures["new_cluster_s"] = first.seconds
    figures["noop_s"] = again.seconds
    return figures


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def table(figures: dict[str, float]) -> str:
    rows = []
    for key, value in figures.items():
        target = TARGETS.get(key)
        verdict = ""
        if target is not None:
            op, bound = target
            met = value <= bound if op == "<=" else value >= bound
            verdict = f"{op} {bound:g}  {'met' if met else 'NOT MET'}"
        rows.append(f"{key:<24} {value:>10.2f}  {verdict}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer clusters rendered (under 5 minutes)")
    size.add_argument("--smoke", action="store_true", help="every measure on tiny fleets: that the bench still runs")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        figures = measure(Path(tmp), SMOKE if args.smoke else QUICK if args.quick else FULL)
    figures["bench_s"] = time.perf_counter() - started
    print(table(figures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
