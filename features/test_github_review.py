"""A reviewer approves the generated pull request on GitHub, and main's head verifies."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from pytest_bdd import given, parsers, scenario, scenarios, then, when

from features.conftest import STATE_BUCKET, World, s3, small_spec, spec_path, verify_signed_by_trusted_key
from pipeline import journal, management, network
from tests.github_fake import BOT, TOKEN, FakeGitHub


@pytest.mark.reliability(
    "secret", "planted GitHub token, AWS secret key, session token and GnuPG passphrase, searched in all the runs wrote"
)
@scenario("github_review.feature", "An approved pull request becomes main, signed by a trusted key")
def test_an_approved_pull_request_becomes_main_signed_by_a_trusted_key() -> None:
    """Bound by name only to carry the reliability marker; its steps are below."""


scenarios("github_review.feature")

# Planted for the whole journey; the local target talks to moto with its own dummy keys.
PLANTED = {
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-4b9d0e7c",
    "AWS_SESSION_TOKEN": "planted-aws-session-8c1f2a3d",
    "PIPELINE_GPG_PASSPHRASE": "planted-passphrase-5e6f7a8b",
}

pytestmark = pytest.mark.slow


@pytest.fixture
def github(world: World) -> Iterator[FakeGitHub]:
    def head_of(branch: str) -> str | None:
        found = subprocess.run(
            ["git", "--git-dir", str(world.fleet), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return found.stdout.strip() or None

    with FakeGitHub(repos={"acme/fleet": (BOT, "alice")}, resolve_head=head_of) as fake:
        yield fake


@given(parsers.parse('an empty fleet hosted on GitHub as "{repo}"'))
def fleet_on_github(world: World, github: FakeGitHub, repo: str) -> None:
    # As a new repository on GitHub is: no branch, no commit. The pipeline pushes to it over a path; Flux would
    # fetch it from GitHub.
    subprocess.run(["git", "init", "--quiet", "--bare", str(world.fleet)], check=True)
    assert world.refs() == ""
    world.env.update(
        GITHUB_API_URL=github.url,
        GITHUB_TOKEN=TOKEN,
        PIPELINE_GITHUB_REPO=repo,
        PIPELINE_FLUX_URL=f"https://github.com/{repo}.git",
        **PLANTED,
    )


@then("main is the fleet's signed first commit, its GitRepository at the address Flux fetches it from")
def main_is_the_first_commit(world: World) -> None:
    assert world.last is not None
    (first,) = world.git("rev-list", "main").split()
    verify_signed_by_trusted_key(world, "main")
    source = yaml.safe_load(world.git("show", "main:flux/system/gitrepository.yaml"))
    assert source["spec"]["url"] == world.env["PIPELINE_FLUX_URL"]
    assert f"main at {first[:12]}, its signed first commit" in world.last.stderr
    world.before["main"] = first


@then("main declares the management cluster's Cluster API providers, and verifies")
def main_declares_the_providers(world: World) -> None:
    declared = yaml.safe_load_all(world.git("show", f"main:{management.PROVIDERS_DIR}providers.yaml"))
    assert sorted((d["kind"], d["metadata"]["name"], d["spec"]["version"]) for d in declared) == sorted(
        (p.kind, p.name, p.version) for p in management.PROVIDERS
    )
    root = list(yaml.safe_load_all(world.git("show", f"main:{management.BOOTSTRAP_SYNC}")))
    assert [(d["kind"], d["spec"].get("path")) for d in root if d] == [
        ("GitRepository", None),
        ("Kustomization", "./flux"),
    ]
    verified = world.pipeline("verify", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["findings"] == []


@then("main is still the fleet's first commit")
def main_is_still_the_first_commit(world: World) -> None:
    assert world.git("rev-list", "main").split() == [world.before["main"]]


@when(parsers.parse('I run new-cluster "{name}" for review on GitHub'))
def new_cluster_on_github(world: World, github: FakeGitHub, name: str) -> None:
    world.requests_before = len(github.requests)
    spec = spec_path(world, name)
    if not spec.exists():
        spec.write_text(small_spec(name, 1))
    world.pipeline("new-cluster", name, "--spec", str(spec), "--review", "github")


@then(parsers.parse('GitHub has one open pull request from "{branch}" that describes the network'))
def one_pull_request(world: World, github: FakeGitHub, branch: str) -> None:
    pulls = github.open_pulls()
    assert [(p.head, p.base) for p in pulls] == [(branch, "main")]
    body = pulls[0].body or ""
    vpc_id = world.git("show", f"{branch}:clusters/web/awscluster.yaml").split("id: ")[1].split()[0].strip('"')
    assert f"VPC `{vpc_id}`" in body
    assert "## Manifests" in body and "clusters/web/awscluster.yaml" in body
    assert "## Provenance" in body and "Pipeline run `" in body


@then(parsers.parse('GitHub still has one pull request from "{branch}", not updated'))
def pull_request_untouched(world: World, github: FakeGitHub, branch: str) -> None:
    assert len(github.open_pulls(branch)) == 1
    writes = [r for r in github.requests[world.requests_before :] if r.method != "GET"]
    assert writes == []


@when("GitHub refuses the next edit of a pull request")
def github_refuses_an_edit(world: World, github: FakeGitHub) -> None:
    # As when the token loses its pull-request permission between the pre-flight check and the review stage.
    github.fail_next(403, body={"message": "Resource not accessible by personal access token"}, method="PATCH")
    world.head_before = world.git("rev-parse", "cluster/web").strip()


@then("the run fails at the review stage after pushing the new head")
def failed_at_review(world: World, github: FakeGitHub) -> None:
    assert world.last is not None
    assert world.last.returncode == 1, world.last.stderr
    assert "Resource not accessible by personal access token" in world.last.stderr
    world.head_after = world.git("rev-parse", "cluster/web").strip()
    assert world.head_after != world.head_before
    (pull,) = github.open_pulls("cluster/web")
    assert "`default`: 3 x" not in (pull.body or "")  # the text still describes the previous head


@when(
    parsers.parse(
        'I run new-cluster "{name}" for review on GitHub on a fresh runner, with an empty state dir and the same bucket'
    )
)
def new_cluster_on_a_fresh_runner(world: World, github: FakeGitHub, name: str) -> None:
    """As CI re-runs a failed job: another machine, nothing of the last run's state dir but the signing key."""
    before = Path(world.env["PIPELINE_STATE_DIR"])
    world.before["failed_run"] = (journal.last_run(before / "runs", name) or {}).get("run")
    world.before["state_versions"] = _state_versions(world, name)
    fresh = world.workdir / ".pipeline-runner-2"
    # The local target's signing key lives in the state dir; a runner is given the fleet's key as a secret.
    shutil.copytree(before / "gnupg", fresh / "gnupg", ignore=shutil.ignore_patterns("S.*", "*.lock"))
    world.env["PIPELINE_STATE_DIR"] = str(fresh)
    new_cluster_on_github(world, github, name)


def _state_versions(world: World, name: str) -> list[str]:
    listed = s3(world).list_object_versions(Bucket=STATE_BUCKET, Prefix=network.state_key(name))
    return [v["VersionId"] for v in listed.get("Versions", [])]


@then("it said it resumes from the failed run, and took the network as that run left it")
def resumed_on_another_machine(world: World) -> None:
    assert world.last is not None
    said = world.last.stderr
    failed = world.before["failed_run"]
    assert failed, "the failed run left no record on its machine"
    assert f"resuming from stage review: run {failed} failed (" in said, said
    assert "network as the unfinished run left it" in said, said
    # Terraform saved no state: it applied nothing.
    assert _state_versions(world, "web") == world.before["state_versions"]


@then("the pull request's title and body describe its head, which the run did not move")
def text_describes_head(world: World, github: FakeGitHub) -> None:
    assert world.git("rev-parse", "cluster/web").strip() == world.head_after
    (pull,) = github.open_pulls("cluster/web")
    body = pull.body or ""
    run_of_head = world.git("log", "-1", "--format=%(trailers:key=Pipeline-Run,valueonly)", "cluster/web").strip()
    assert "`default`: 3 x m6i.large" in body
    assert f"Pipeline run `{run_of_head}`" in body
    assert pull.title.startswith("Create cluster web (us-east-1, Kubernetes v")


@when(parsers.parse('I run merge "{name}"'))
def run_merge(world: World, name: str) -> None:
    world.pipeline("merge", name)


@then("the run is blocked because the pull request is not approved")
def blocked_unapproved(world: World) -> None:
    assert world.last is not None
    assert world.last.returncode == 3, world.last.stderr
    assert "not approved" in world.last.stderr
    assert world.git("rev-parse", "main") != world.git("rev-parse", "cluster/web")


@when("a reviewer approves the pull request at its head")
def reviewer_approves(world: World, github: FakeGitHub) -> None:
    (pull,) = github.open_pulls()
    world.approved = world.git("rev-parse", pull.head).strip()
    github.add_review(pull.number, "alice", "APPROVED", world.approved)


@then("main's head is the approved commit")
def main_is_approved_commit(world: World) -> None:
    assert world.git("rev-parse", "main").strip() == world.approved


@then("no secret the runs were given appears anywhere they wrote")
def secrets_nowhere(world: World, github: FakeGitHub, record_property: Callable[[str, object], None]) -> None:
    """Every secret the runs were given, searched for in all they wrote: output, fleet, state dir, GitHub."""
    secrets = {"GITHUB_TOKEN": TOKEN, **PLANTED}
    # Every machine's state dir, and the run records kept beside the Terraform state.
    files = [
        path
        for state_dir in world.workdir.glob(".pipeline*")
        for path in state_dir.rglob("*")
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 5_000_000
    ]
    record_key = network.journal_key("web")
    in_bucket = s3(world).get_object(Bucket=STATE_BUCKET, Key=record_key)["Body"].read().decode()
    written = {
        "run output": "".join(r.stdout + r.stderr for r in world.history),
        "fleet git log --all -p": world.git("log", "--all", "-p", "--format=%H%n%B"),
        "fleet objects": subprocess.run(
            ["git", "--git-dir", str(world.fleet), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", "replace"),
        "GitHub request bodies": json.dumps([r.json for r in github.requests]),
        **{str(path): path.read_bytes().decode("utf-8", "replace") for path in files},
        f"s3://{STATE_BUCKET}/{record_key}": in_bucket,
    }
    found = [
        f"{name} in {where}" for name, value in secrets.items() for where, text in written.items() if value in text
    ]
    record_property(
        "outcome",
        f"{len(secrets)} planted secrets ({', '.join(sorted(secrets))}) searched in {len(world.history)} runs' output, "
        f"the fleet's history and objects, {len(github.requests)} GitHub requests and {len(files)} state files: "
        f"{len(found)} found",
    )
    assert not found
