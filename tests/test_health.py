"""Health as Flux reports it: commit statuses posted to the GitHub stand-in, read back by `status` and `list`."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline import fleet, health, signing
from pipeline.commands import list_clusters, status
from pipeline.config import GitHubSettings, Settings
from pipeline.report import Reporter
from tests.fixtures import fleet_git
from tests.github_fake import REPO, TOKEN, FakeGitHub
from tests.test_inventory import DEMO_CIDR, OTHER_CIDR, _land


def _on_github(settings: Settings, fake: FakeGitHub) -> Settings:
    forge = GitHubSettings(api_url=fake.url, repo=REPO, token=TOKEN, labels=(), reviewers=())
    return dataclasses.replace(settings, github=forge)


def _post_as_flux(fake: FakeGitHub, sha: str, context: str, state: str, description: str) -> None:
    """What notification-controller's github provider sends: POST /repos/{owner}/{repo}/statuses/{sha}."""
    body = json.dumps({"state": state, "context": context, "description": description}).encode()
    request = urllib.request.Request(
        f"{fake.url}/repos/{REPO}/statuses/{sha}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 201


def _lines(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_status_reads_the_commit_status_flux_posted_as_ready(
    settings: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeGitHub() as fake:
        forge = _on_github(settings, fake)
        main = _land(forge, fleet_signer, "demo", DEMO_CIDR)
        _post_as_flux(fake, main, health.context("demo"), "pending", "Health check in progress")
        _post_as_flux(fake, main, health.context("demo"), "success", "Health check passed in 14m2s")

        assert status.run("demo", forge, Reporter()) == 0

    assert _lines(capsys.readouterr().out)["health"] == "ready (Health check passed in 14m2s)"
    assert [r.path for r in fake.requests if r.method == "GET"] == [f"/repos/{REPO}/commits/{main}/status"]


def test_list_shows_each_cluster_from_one_call_and_says_why_one_is_unknown(
    settings: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeGitHub() as fake:
        forge = _on_github(settings, fake)
        _land(forge, fleet_signer, "demo", DEMO_CIDR)
        main = _land(forge, fleet_signer, "other", OTHER_CIDR)
        _post_as_flux(fake, main, health.context("demo"), "failure", "Cluster demo: health check timed out")

        assert list_clusters.run(forge, Reporter()) == 0
        reads = [r for r in fake.requests if r.method == "GET"]

    out = capsys.readouterr().out.splitlines()
    header, demo, other = out[:3]
    column = header.index("HEALTH")
    assert demo[column:].startswith("not-ready") and other[column:].startswith("unknown")
    assert f"health unknown: Flux has posted no fleet/cluster-other status on main's head {main[:12]}" in out
    assert len(reads) == 1


def test_without_a_forge_the_health_is_unknown_and_says_why(
    settings: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    _land(settings, fleet_signer, "demo", DEMO_CIDR)

    assert status.run("demo", settings, Reporter()) == 0

    assert _lines(capsys.readouterr().out)["health"] == (
        "unknown (the fleet is not on a forge that Flux reports to; set PIPELINE_GITHUB_REPO when it is)"
    )


def test_the_fleet_posts_health_for_every_cluster_kustomization_to_its_repository(
    settings: Settings, signer: signing.Signer, tmp_path: Path
) -> None:
    with FakeGitHub() as fake:
        forge = dataclasses.replace(_on_github(settings, fake), fleet=str(tmp_path / "on-github.git"))
        fleet.ensure_fleet(forge, signer)
    text = fleet_git(forge.fleet, "show", f"{fleet.MAIN}:{fleet.HEALTH_FILE}")
    provider, alert = yaml.safe_load_all(text)
    assert provider["spec"]["type"] == "github"
    assert provider["spec"]["address"] == f"https://{fake.url.split('://')[1]}/{REPO}"
    assert provider["spec"]["commitStatusExpr"] == "'fleet/' + event.involvedObject.name"
    assert alert["spec"]["providerRef"] == {"name": "fleet-forge"}
    assert alert["spec"]["eventSources"] == [{"kind": "Kustomization", "name": "*"}]
