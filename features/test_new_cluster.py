"""A new cluster on the local target: create, approve, re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_bdd import parsers, scenarios, then, when

from features.conftest import World

scenarios("new_cluster.feature")

pytestmark = pytest.mark.slow


@when(parsers.parse('I run new-cluster "{name}" in GitHub Actions with --json'))
def new_cluster_in_actions(world: World, name: str) -> None:
    world.env.update(
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(world.workdir / "github-output"),
        GITHUB_STEP_SUMMARY=str(world.workdir / "github-summary"),
    )
    world.pipeline("new-cluster", name, "--json")


@when(parsers.parse('I run new-cluster "{name}" again with the same inputs'))
def new_cluster_again(world: World, name: str) -> None:
    world.refs_before = world.refs()
    world.pipeline("new-cluster", name)


@then(parsers.parse('its JSON result, step outputs and job summary name the commit on "{branch}"'))
def actions_outputs(world: World, branch: str) -> None:
    assert world.last is not None
    head = world.git("rev-parse", branch).strip()
    result = json.loads(world.last.stdout)
    assert (result["commit"], result["branch"], result["changed"]) == (head, branch, True)
    assert f"commit={head}\npr_url=\n" in Path(world.env["GITHUB_OUTPUT"]).read_text()
    summary = Path(world.env["GITHUB_STEP_SUMMARY"]).read_text()
    assert f"`{head}`" in summary and f"`{result['vpc_id']}`" in summary
    assert "::group::network" in world.last.stderr
