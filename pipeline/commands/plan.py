"""`plan NAME`: what new-cluster would change, written nowhere; exit 4 when there is something to change."""

from __future__ import annotations

from pathlib import Path

from pipeline import plan, spec_source
from pipeline.config import Settings
from pipeline.errors import EXIT_CHANGES, EXIT_OK
from pipeline.report import Outcome, Reporter


def run(name: str, spec_path: Path | None, markdown: bool, settings: Settings, reporter: Reporter) -> int:
    source = spec_source.load(name, spec_path)
    with reporter.stage("plan"):
        result = plan.plan_cluster(name, source, settings, reporter.tool_line)
    # The plan itself goes to stdout, progress to stderr: `plan demo --markdown > comment.md` works.
    shown = plan.to_markdown(result) if markdown else plan.to_text(result)
    reporter.finish(Outcome(tuple(shown.splitlines()), _data(result), summary=plan.to_markdown(result)))
    return EXIT_CHANGES if result.changed else EXIT_OK


def _data(result: plan.ClusterPlan) -> dict[str, object]:
    network = result.network
    return {
        "cluster": result.cluster.name,
        "region": result.cluster.region,
        "vpc_cidr": result.cluster.vpc_cidr,
        "changed": result.changed,
        "plan_hash": result.plan_hash,
        "network": {
            "add": network.summary.add,
            "change": network.summary.change,
            "destroy": network.summary.destroy,
            "resources": [{"address": address, "action": action} for address, action in network.resources],
            "replaces_network": list(network.replaces_network),
        },
        # None: not rendered yet, as a new cluster has no network ids to render with.
        "manifests": None if result.files is None else [{"path": p, "status": s} for p, s in result.files],
        "diff": result.diff,
    }
