"""`plan NAME`: what new-cluster would change, written nowhere; exit 4 when there is something to change."""

from __future__ import annotations

from pathlib import Path

from pipeline import plan, spec
from pipeline.config import Settings
from pipeline.errors import EXIT_CHANGES, EXIT_OK
from pipeline.report import Reporter


def run(name: str, spec_path: Path | None, markdown: bool, settings: Settings, reporter: Reporter) -> int:
    source = spec.load(name, spec_path)
    with reporter.stage("plan"):
        result = plan.plan_cluster(name, source, settings, reporter.tool_line)
    # The plan itself goes to stdout, progress to stderr: `plan demo --markdown > comment.md` works.
    print(plan.to_markdown(result) if markdown else plan.to_text(result), end="")
    return EXIT_CHANGES if result.changed else EXIT_OK
