"""The review stage on GitHub: access checked before anything runs, and pull request text that describes its head."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline import config, fleet, pr_body, review, signing
from pipeline.errors import GitHubAuthError, GitHubForbidden, GitHubNotFound
from tests.fixtures import fleet_refs
from tests.fleet_calls import commit
from tests.github_fake import BOT, TOKEN, FakeGitHub
from tests.test_cli import observed, run_cli
from tests.test_commit import manifests

WRONG = "ghp_wrongToken0123456789abcdefABCDEF99"


def github_settings(settings: config.Settings, fake: FakeGitHub, token: str = TOKEN) -> config.Settings:
    env = {"GITHUB_API_URL": fake.url, "GITHUB_TOKEN": token, "PIPELINE_GITHUB_REPO": "octo/fleet"}
    return config.load_settings({"PIPELINE_STATE_DIR": str(settings.state_dir), **env}, Path(settings.fleet).parent)


def test_a_token_that_may_push_passes_the_check_in_one_call(settings: config.Settings) -> None:
    with FakeGitHub() as fake:
        review.check(github_settings(settings, fake))
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/repos/octo/fleet")]


@pytest.mark.parametrize(
    ("token", "error", "says"),
    [
        (WRONG, GitHubAuthError, "GitHub rejected the token (401 Bad credentials); check GITHUB_TOKEN"),
        ("ghp_reader", GitHubForbidden, "may read octo/fleet but not push to it"),
        ("ghp_stranger", GitHubNotFound, "does not exist or the token cannot see it"),
    ],
)
def test_a_token_that_cannot_push_is_refused_by_the_check(
    settings: config.Settings, token: str, error: type[Exception], says: str
) -> None:
    tokens = {TOKEN: BOT, "ghp_reader": "carol", "ghp_stranger": "mallory"}
    with FakeGitHub(tokens=tokens, readers={"octo/fleet": ("carol",)}) as fake, pytest.raises(error) as raised:
        review.check(github_settings(settings, fake, token))
    assert says in str(raised.value)
    assert token not in str(raised.value)


@pytest.mark.reliability("bad input", "new-cluster --review github with a token GitHub rejects, on an empty remote")
def test_a_wrong_token_stops_new_cluster_before_terraform_with_nothing_pushed(tmp_path: Path, record_property) -> None:
    remote = tmp_path / "fleet.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    state = tmp_path / "state"
    with FakeGitHub() as fake:
        env = {
            "PIPELINE_STATE_DIR": str(state),
            "PIPELINE_FLEET": remote.as_uri(),
            "GITHUB_API_URL": fake.url,
            "GITHUB_TOKEN": WRONG,
            "PIPELINE_GITHUB_REPO": "octo/fleet",
        }
        result = run_cli(tmp_path, "new-cluster", "web", "--review", "github", env=env)
    record_property("outcome", observed(result))

    assert result.returncode == 1, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("GitHub rejected the token (401 Bad credentials); check GITHUB_TOKEN")
    )
    assert WRONG not in result.stderr + result.stdout
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/repos/octo/fleet")]
    assert fleet_refs(remote) == ""  # nothing pushed
    # Neither Terraform nor the AWS endpoint was reached: no working dir, no endpoint started.
    assert not (state / "terraform").exists()
    assert not (state / "local-endpoint.json").exists()


def test_the_provenance_is_read_from_the_head_not_from_the_run_that_reads_it(
    settings: config.Settings, fleet_signer: signing.Signer
) -> None:
    made = {**pr_body.run_trailers("run-1", "https://github.example/acme/specs/actions/runs/7")}
    made |= {pr_body.CHANGES_TRAILER: "34 to add, 0 to change, 0 to destroy", pr_body.SERIAL_TRAILER: "3"}
    head = commit(manifests(), settings, fleet_signer, made, "create").commit
    with fleet.session(settings) as checkout:
        found = review.provenance(checkout, head)
    assert found == pr_body.Provenance(
        fleet_signer.fingerprint,
        "run-1",
        "https://github.example/acme/specs/actions/runs/7",
        "34 to add, 0 to change, 0 to destroy",
        "3",
    )


def test_an_unchanged_head_with_stale_text_gets_the_text_that_describes_it(settings: config.Settings) -> None:
    """A run that pushed and then failed before GitHub left the previous head's text; the next run mends it."""
    with FakeGitHub() as fake:
        fake.set_head_sha("cluster/demo", "1" * 40)
        on_github = github_settings(settings, fake)
        before = review.open_pull_request(on_github, "cluster/demo", "Create cluster demo", "the previous head")
        after = review.open_pull_request(on_github, "cluster/demo", "Create cluster demo", "the current head")
        again = len(fake.requests)
        review.open_pull_request(on_github, "cluster/demo", "Create cluster demo", "the current head")

    assert after.number == before.number
    assert [p.body for p in fake.open_pulls()] == ["the current head"]
    assert ("PATCH", f"/repos/octo/fleet/pulls/{before.number}") in [(r.method, r.path) for r in fake.requests]
    assert [r for r in fake.requests[again:] if r.method != "GET"] == []
