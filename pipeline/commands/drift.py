"""`drift NAME --issues-repo OWNER/NAME`: plan the cluster and keep its one drift issue up to date.

Exit 0 when the plan finds nothing to change, 4 when it finds drift (as `plan`), whatever the
issue needed: opening, an edit, closing or nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline import drift_issue, github, plan, pr_body, spec_source
from pipeline.config import Settings
from pipeline.errors import EXIT_CHANGES, EXIT_OK, BadInput
from pipeline.report import Outcome, Reporter


def run(name: str, spec_path: Path | None, issues_repo: str | None, settings: Settings, reporter: Reporter) -> int:
    source = spec_source.load(name, spec_path)
    owner, repo = _repository(issues_repo or os.environ.get("GITHUB_REPOSITORY"))
    if not settings.github.token:
        raise BadInput("drift issues need a token: set GITHUB_TOKEN (issues write on the issues repository)")
    client = github.Client(settings.github.api_url, settings.github.token)
    # Read first: a bad token or repository costs one call, not a plan.
    current = drift_issue.find(client, owner, repo, name)
    with reporter.stage("plan"):
        result = plan.plan_cluster(name, source, settings, reporter.tool_line)
    shown = plan.to_markdown(result, limit=drift_issue.PLAN_ROOM) if result.changed else None
    with reporter.stage("issue"):
        note = "The plan finds no changes any more: the drift is gone." + _run_link()
        kept = drift_issue.keep(client, owner, repo, name, current, shown, note)
    line = f"cluster {name}: {'drift' if result.changed else 'no drift'}; plan hash {result.plan_hash}"
    issue = "no drift issue" if kept.issue is None else f"issue #{kept.issue.number} {kept.action}: {kept.issue.url}"
    data = {
        "cluster": name,
        "drifted": result.changed,
        "plan_hash": result.plan_hash,
        "issue": None
        if kept.issue is None
        else {"number": kept.issue.number, "url": kept.issue.url, "state": kept.issue.state, "action": kept.action},
    }
    reporter.finish(Outcome((line, issue), data, summary=f"### Drift of `{name}`\n\n{line}\n\n{issue}\n"))
    return EXIT_CHANGES if result.changed else EXIT_OK


def _repository(slug: str | None) -> tuple[str, str]:
    if not slug:
        raise BadInput("drift issues need a repository: pass --issues-repo OWNER/NAME (or set GITHUB_REPOSITORY)")
    owner, _, name = slug.partition("/")
    if not owner or not name or "/" in name:
        raise BadInput(
            f"--issues-repo {slug!r} is not owner/name; pass the repository whose issues track drift, e.g. acme/specs"
        )
    return owner, name


def _run_link() -> str:
    url = pr_body.workflow_run_url(os.environ)
    return "" if url is None else f" ([workflow run]({url}))"
