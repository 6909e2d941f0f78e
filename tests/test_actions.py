from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from pipeline import actions
from pipeline.actions import Runner
from pipeline.commands import new_cluster
from pipeline.github import PullRequest
from pipeline.model import CommitResult, Manifest, Manifests, NetworkResult, PlanSummary
from pipeline.redact import register
from pipeline.report import Outcome, Reporter
from tests.fixtures_render import sample_outputs, sample_spec

HEAD = "0123456789abcdef0123456789abcdef01234567"
PULL_URL = "https://github.com/acme/fleet/pull/7"


def read_outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT read as the runner reads it: `name=value`, or `name<<DELIM`, lines, then DELIM alone."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines.pop() == "", "the file ends with a line break"
    found: dict[str, str] = {}
    while lines:
        line = lines.pop(0)
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            found[line[:equals]] = line[equals + 1 :]
            continue
        assert heredoc > 0, f"neither form: {line!r}"
        name, delimiter = line[:heredoc], line[heredoc + 2 :]
        end = lines.index(delimiter)
        found[name] = "\n".join(lines[:end])
        del lines[: end + 1]
    return found


def runner(tmp_path: Path) -> Runner:
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    summary.write_text("# from an earlier step\n")
    output.touch()
    return Runner.from_env({"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)})


def test_a_message_with_a_line_break_stays_one_command():
    line = actions.command("error", "bad spec\n::warning::x\r\n100%")
    assert line == "::error::bad spec%0A::warning::x%0D%0A100%25"
    assert line.splitlines() == [line]


def test_property_values_cannot_end_the_property_list_or_the_command():
    line = actions.command("error", "it broke", file="a,b:c.yaml", line="4")
    assert line == "::error file=a%2Cb%3Ac.yaml,line=4::it broke"


def test_a_secret_is_masked_before_it_is_escaped():
    register(["pa%ss:w,ord-1234"])
    line = actions.command("error", "rejected pa%ss:w,ord-1234", title="pa%ss:w,ord-1234")
    assert line == "::error title=***::rejected ***"


def test_outputs_are_written_in_the_runners_format(tmp_path: Path):
    files = runner(tmp_path)
    files.set_outputs({"commit": HEAD, "pr_url": ""})
    files.set_outputs({"notes": "two\nlines", "eq": "a=b<<c"})
    assert read_outputs(tmp_path / "output") == {"commit": HEAD, "pr_url": "", "notes": "two\nlines", "eq": "a=b<<c"}


def test_a_multi_line_value_never_contains_its_own_delimiter():
    entry = actions.output_entry("notes", "ghadelimiter_x\nEOF")
    delimiter = entry.split("\n", 1)[0].removeprefix("notes<<")
    assert re.fullmatch(r"ghadelimiter_[0-9a-f-]{36}", delimiter)
    assert entry == f"notes<<{delimiter}\nghadelimiter_x\nEOF\n{delimiter}\n"


def test_an_output_name_the_runner_would_misread_is_refused():
    with pytest.raises(ValueError, match="not a plain identifier"):
        actions.output_entry("a=b", "c")


def test_the_summary_is_appended_and_secrets_never_reach_the_files(tmp_path: Path):
    register(["ghp_secretsecretsecret"])
    files = runner(tmp_path)
    files.add_summary("token ghp_secretsecretsecret used")
    files.set_outputs({"token": "ghp_secretsecretsecret", "notes": "a\nghp_secretsecretsecret"})
    assert (tmp_path / "summary.md").read_text() == "# from an earlier step\ntoken *** used\n\n"
    assert "ghp_secret" not in (tmp_path / "output").read_text()
    assert read_outputs(tmp_path / "output") == {"token": "***", "notes": "a\n***"}


def test_outside_actions_nothing_is_written():
    files = Runner.from_env({})
    assert files == Runner(None, None)
    files.add_summary("x")  # nowhere to write: no error either
    files.set_outputs({"commit": HEAD})


def finished(pull: PullRequest | None) -> Outcome:
    manifests = Manifests(
        "demo", (Manifest("clusters/demo/cluster.yaml", "x"), Manifest("flux/clusters/demo.yaml", "y"))
    )
    return new_cluster.finished(
        sample_spec(),
        NetworkResult(sample_outputs(), PlanSummary(add=27, change=0, destroy=0), state_serial=1),
        manifests,
        CommitResult("cluster/demo", HEAD, changed=True, signer="ABCDEF"),
        pull=pull,
        on_main_already=False,
    )


def test_new_cluster_hands_the_job_its_commit_pull_request_and_summary(tmp_path: Path):
    pull = PullRequest(7, PULL_URL, "cluster/demo", HEAD, "main", "open", "Create cluster demo", "")
    Reporter(io.StringIO(), out=io.StringIO(), runner=runner(tmp_path)).finish(finished(pull))

    assert read_outputs(tmp_path / "output") == {"commit": HEAD, "pr_url": PULL_URL}
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# from an earlier step\n### Cluster `demo`\n")
    for shown in (
        "| Region | us-east-1 |",
        "| Kubernetes | v1.31.2 |",
        "| VPC | `vpc-0abc1234` 10.20.0.0/16 |",
        "| Zones | us-east-1a, us-east-1b, us-east-1c |",
        f"| Commit | `{HEAD}` on `cluster/demo` |",
        f"| Pull request | [#7]({PULL_URL}) |",
        "| us-east-1a | `subnet-pub0` 10.20.48.0/20 | `subnet-prv0` 10.20.0.0/20 |",
        f"**Next:** a reviewer approves {PULL_URL}, then: python -m pipeline merge demo",
    ):
        assert shown in summary


def test_new_cluster_reviewed_locally_has_an_empty_pr_url_and_says_approve(tmp_path: Path):
    Reporter(io.StringIO(), out=io.StringIO(), runner=runner(tmp_path)).finish(finished(None))
    assert read_outputs(tmp_path / "output") == {"commit": HEAD, "pr_url": ""}
    summary = (tmp_path / "summary.md").read_text()
    assert "Pull request" not in summary
    assert "**Next:** review and approve it: python -m pipeline approve demo" in summary
