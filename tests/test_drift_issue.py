"""`drift NAME`: one issue per drifted cluster on the GitHub stand-in, opened, kept to the plan, closed."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, network
from pipeline.commands import drift
from pipeline.errors import EXIT_CHANGES, EXIT_OK, GitHubAuthError
from pipeline.report import Reporter
from tests.github_fake import REPO, TOKEN, FakeGitHub
from tests.test_plan import _planned_with_outputs, _put_on_main, _spec_file

TITLE = "Drift: cluster demo"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture
def drift_settings(
    settings: config.Settings, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, fake: FakeGitHub
) -> config.Settings:
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    return config.load_settings(os.environ, settings.state_dir.parent)


def _drift(tmp_path: Path, settings: config.Settings, replicas: int) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = drift.run(
        "demo", _spec_file(tmp_path, "demo", replicas), REPO, settings, Reporter(io.StringIO(), out=out, as_json=True)
    )
    return code, json.loads(out.getvalue())


def _calls(fake: FakeGitHub, since: int) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.requests[since:]]


def test_a_drifted_cluster_has_one_issue_kept_to_its_plan_and_closed_once_in_sync(
    tmp_path, drift_settings, fleet_signer, monkeypatch, fake
):
    _planned_with_outputs(monkeypatch)
    _put_on_main(drift_settings, fleet_signer, _spec_file(tmp_path, "demo"), "demo")
    # Neither someone's issue of the same title without the marker, nor a labelled pull request, is the cluster's.
    fake.add_issue(TITLE, "it looks off to me", labels=["drift"])

    code, shown = _drift(tmp_path, drift_settings, replicas=3)
    assert code == EXIT_CHANGES
    opened = fake.issues[shown["issue"]["number"]]
    assert (shown["drifted"], shown["issue"]["action"]) == (True, "opened")
    assert (opened.title, opened.labels, opened.state) == (TITLE, ["drift"], "open")
    assert opened.body.startswith("<!-- fleet-pipeline-drift demo -->\n")
    assert "-  replicas: 1\n+  replicas: 3\n" in opened.body
    assert f"<!-- fleet-pipeline-plan-hash demo {shown['plan_hash']} -->" in opened.body

    # The same drift again: found by its label and marker, and left as it is.
    since = len(fake.requests)
    code, shown = _drift(tmp_path, drift_settings, replicas=3)
    assert (code, shown["issue"]["action"], shown["issue"]["number"]) == (EXIT_CHANGES, "unchanged", opened.number)
    assert _calls(fake, since) == [("GET", "/repos/octo/fleet/issues")]

    code, shown = _drift(tmp_path, drift_settings, replicas=5)
    assert (code, shown["issue"]["action"], shown["issue"]["number"]) == (EXIT_CHANGES, "updated", opened.number)
    assert "+  replicas: 5\n" in opened.body and "+  replicas: 3\n" not in opened.body

    code, shown = _drift(tmp_path, drift_settings, replicas=1)
    assert (code, shown["drifted"], shown["issue"]["action"]) == (EXIT_OK, False, "closed")
    assert (opened.state, opened.state_reason) == ("closed", "completed")
    assert [c["body"] for c in opened.comments] == ["The plan finds no changes any more: the drift is gone."]

    # In sync and no issue open: nothing to write.
    since = len(fake.requests)
    code, shown = _drift(tmp_path, drift_settings, replicas=1)
    assert (code, shown["issue"]) == (EXIT_OK, None)
    assert _calls(fake, since) == [("GET", "/repos/octo/fleet/issues")]
    assert [i.state for i in fake.issues.values()] == ["open", "closed"]  # the hand-made one untouched
    assert len(fake.issues) == 2


def test_a_second_drifted_cluster_gets_an_issue_of_its_own_and_pages_are_followed(
    tmp_path, drift_settings, fleet_signer, monkeypatch, fake
):
    _planned_with_outputs(monkeypatch)
    _put_on_main(drift_settings, fleet_signer, _spec_file(tmp_path, "demo"), "demo")
    # More drift issues than one page holds, the cluster's own the last of them.
    for n in range(100):
        fake.add_issue(f"Drift: cluster other{n}", f"<!-- fleet-pipeline-drift other{n} -->\n", labels=["drift"])
    first, _ = _drift(tmp_path, drift_settings, replicas=3)
    code, shown = _drift(tmp_path, drift_settings, replicas=3)

    assert (first, code, shown["issue"]["action"]) == (EXIT_CHANGES, EXIT_CHANGES, "unchanged")
    assert [i.number for i in fake.issues.values() if i.title == TITLE] == [shown["issue"]["number"]]
    listed = [r.query.get("page") for r in fake.requests if r.path == "/repos/octo/fleet/issues" and r.method == "GET"]
    assert listed[-2:] == [None, "2"]


def test_a_token_github_rejects_fails_before_anything_is_planned(tmp_path, drift_settings, monkeypatch, fake):
    def not_planned(*_: object, **__: object) -> None:
        raise AssertionError("planned with a token GitHub rejects")

    monkeypatch.setattr(network, "plan", not_planned)
    wrong = dataclasses.replace(
        drift_settings, github=dataclasses.replace(drift_settings.github, token="ghp_wrongToken0123456789abcdef")
    )
    with pytest.raises(GitHubAuthError, match="GitHub rejected the token"):
        _drift(tmp_path, wrong, replicas=3)
    assert fake.issues == {}
