from __future__ import annotations

import io
import json

import pytest

from pipeline.actions import Runner
from pipeline.redact import register
from pipeline.report import Outcome, Reporter, markdown_list


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
    reporter = Reporter(out, runner=Runner())
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


def test_in_actions_an_error_with_a_place_is_an_annotation_there_and_stays_one_line():
    out = io.StringIO()
    Reporter(out, runner=Runner()).error("bad\n::warning::x", file="specs/a,b.yaml", line=4)
    assert out.getvalue() == "::error file=specs/a%2Cb.yaml,line=4::bad%0A::warning::x\n"


def test_a_command_ends_with_its_lines_on_stdout():
    progress, out = io.StringIO(), io.StringIO()
    Reporter(progress, out=out).finish(Outcome(("cluster demo: created", "next: approve it"), {"cluster": "demo"}))
    assert out.getvalue() == "cluster demo: created\nnext: approve it\n"
    assert progress.getvalue() == ""


def test_with_json_stdout_is_one_object_and_the_lines_go_with_the_progress():
    register(['tok"en-secret-value'])
    progress, out = io.StringIO(), io.StringIO()
    reporter = Reporter(progress, out=out, as_json=True)
    reporter.finish(Outcome(("done",), {"cluster": "demo", "note": ['tok"en-secret-value'], "pull_request": None}))
    assert json.loads(out.getvalue()) == {"cluster": "demo", "note": ["***"], "pull_request": None}
    assert progress.getvalue() == "done\n"


def test_with_json_a_failure_is_one_object_too_and_still_one_line_on_stderr():
    progress, out = io.StringIO(), io.StringIO()
    Reporter(progress, out=out, as_json=True).failed("no fleet", 2)
    assert json.loads(out.getvalue()) == {"error": "no fleet", "exit_code": 2}
    assert progress.getvalue() == "error: no fleet\n"


def test_a_summary_made_of_lines_is_a_heading_and_bullets():
    assert markdown_list("Approved cluster demo", ["main is now abc", "Flux applies it"]) == (
        "### Approved cluster demo\n\n- main is now abc\n- Flux applies it\n"
    )
