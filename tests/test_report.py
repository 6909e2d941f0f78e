from __future__ import annotations

import io

import pytest

from pipeline.redact import register
from pipeline.report import Reporter


def test_stages_show_progress_and_time_at_a_terminal():
    out = io.StringIO()
    reporter = Reporter(out)
    with reporter.stage("network"):
        reporter.tool_line("aws_vpc.this: Refreshing state...")
        reporter.tool_line("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
    lines = out.getvalue().splitlines()
    assert lines[0] == "==> network"
    assert lines[1] == "    | Apply complete! Resources: 1 added, 0 changed, 0 destroyed."
    assert lines[2].startswith("    network done in ")
    assert len(lines) == 3


def test_verbose_shows_every_tool_line():
    out = io.StringIO()
    Reporter(out, verbose=True).tool_line("aws_vpc.this: Refreshing state...")
    assert out.getvalue() == "    | aws_vpc.this: Refreshing state...\n"


def test_in_actions_stages_are_log_groups_and_errors_annotations():
    out = io.StringIO()
    reporter = Reporter(out, actions=True)
    with pytest.raises(RuntimeError), reporter.stage("render"):
        raise RuntimeError
    reporter.error("it broke")
    lines = out.getvalue().splitlines()
    assert lines[0] == "::group::render"
    assert lines[1].startswith("    render failed after")
    assert lines[2:] == ["::endgroup::", "::error::it broke"]


def test_colour_only_when_asked_and_secrets_never_printed():
    register(["hunter2-secret-value"])
    plain, painted = io.StringIO(), io.StringIO()
    Reporter(plain).error("token hunter2-secret-value rejected")
    Reporter(painted, color=True).error("x")
    assert plain.getvalue() == "error: token *** rejected\n"
    assert "\033[31m" in painted.getvalue()
