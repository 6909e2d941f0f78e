"""The GitHub Actions workflows: valid against GitHub's schema, and right where it matters.

The shell steps that carry decisions (plan's exit 4, the fleet check's refs, the signing
key's import) are run here with bash as Actions runs them, with `python` stubbed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import fleet, plan, signing, spec, spec_source
from pipeline.model import NetworkPlan, PlanSummary

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
FLEET_TEMPLATE = ROOT / "templates" / "fleet" / "verify.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
# How Actions runs a `run:` script when the shell is bash (the default on Linux runners).
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
ALL = [*sorted(WORKFLOWS.glob("*.yml")), FLEET_TEMPLATE]
# gpg without prompts, for a key without a passphrase.
GPG = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]


def load(path: Path) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as true.
    return {"on" if key is True else str(key): value for key, value in raw.items()}


def steps(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in doc["jobs"].values():
        yield from job.get("steps", [])


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in steps(doc) if s.get("name") == name]
    assert len(found) == 1, f"no single step named {name!r}"
    return found[0]


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def run_script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASH, "-c", script], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, check=False
    )


def stub_python(bin_dir: Path, body: str) -> None:
    """A `python` on PATH that is a Python script of the test's choosing."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    stub = bin_dir / "python"
    stub.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body), encoding="utf-8")
    stub.chmod(0o755)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def git_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "commit.gpgSign", "false")
    return path


def commit_files(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, content in files.items():
        if content is None:
            git(repo, "rm", "-q", name)
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(content, encoding="utf-8")
            git(repo, "add", name)
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# --- GitHub's workflow schema -------------------------------------------------------------


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(ROOT).as_posix() for p in ALL])
def test_each_workflow_is_valid_against_githubs_schema(path: Path) -> None:
    checked = check_jsonschema(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    timeout-minute: 5\n    steps:\n      - run: make\n",
        encoding="utf-8",
    )
    checked = check_jsonschema(broken)
    assert checked.returncode != 0
    assert "timeout-minute" in checked.stdout


def test_every_workflow_is_expected() -> None:
    expected = ["apply.yml", "ci.yml", "drift.yml", "new-cluster.yml", "plan.yml"]
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == expected


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(ROOT).as_posix() for p in ALL])
def test_no_expression_is_pasted_into_a_script(path: Path) -> None:
    """Values reach scripts through env: text pasted by ${{ }} would run as shell code."""
    for found in steps(load(path)):
        if "run" in found:
            assert "${{" not in found["run"], f"{path.name}: step {found.get('name')!r} interpolates into run:"


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(ROOT).as_posix() for p in ALL])
def test_no_long_lived_aws_keys(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"secrets\.AWS_|aws-access-key-id|aws-secret-access-key|AWS_SECRET_ACCESS_KEY", text)


# --- new-cluster --------------------------------------------------------------------------


def test_new_cluster_takes_its_inputs_and_runs_one_cluster_at_a_time() -> None:
    doc = load(WORKFLOWS / "new-cluster.yml")
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert inputs["cluster"]["required"] is True
    assert inputs["spec"]["required"] is True
    assert inputs["spec"]["type"] == "string"
    assert inputs["review"]["type"] == "choice"
    assert sorted(inputs["review"]["options"]) == ["github", "local"]
    assert inputs["review"]["default"] == "github"
    # The fleet is written with secrets.FLEET_TOKEN: the job's own token only checks out and asks for OIDC.
    assert doc["permissions"] == {}
    assert doc["jobs"]["new-cluster"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert doc["concurrency"] == {"group": "new-cluster-${{ inputs.cluster }}", "cancel-in-progress": False}


def test_new_cluster_assumes_its_aws_role_through_oidc() -> None:
    doc = load(WORKFLOWS / "new-cluster.yml")
    aws = [s for s in steps(doc) if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    assert len(aws) == 1
    assert aws[0]["uses"].startswith("aws-actions/configure-aws-credentials@")
    assert aws[0]["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    terraform = [s for s in steps(doc) if str(s.get("uses", "")).startswith("hashicorp/setup-terraform@")]
    assert terraform[0]["with"]["terraform_wrapper"] is False


def test_new_cluster_runs_the_pipeline_from_env_and_exposes_its_outputs() -> None:
    doc = load(WORKFLOWS / "new-cluster.yml")
    (job,) = doc["jobs"].values()
    run = [s for s in job["steps"] if "python -m pipeline new-cluster" in s.get("run", "")]
    assert len(run) == 1
    pipeline = run[0]
    assert job["outputs"] == {
        "commit": f"${{{{ steps.{pipeline['id']}.outputs.commit }}}}",
        "pr_url": f"${{{{ steps.{pipeline['id']}.outputs.pr_url }}}}",
    }
    assert pipeline["run"].split() == [
        *("python", "-m", "pipeline", "new-cluster", '"$CLUSTER"', "--target", "aws"),
        *("--spec", '"$SPEC"', "--review", '"$REVIEW"', "--fleet", '"$FLEET"'),
    ]
    env = pipeline["env"]
    assert env["CLUSTER"] == "${{ inputs.cluster }}"
    assert env["SPEC"] == "${{ inputs.spec }}"
    assert env["REVIEW"] == "${{ inputs.review }}"
    assert env["FLEET"] == "${{ vars.FLEET_REPO }}"
    assert env["GITHUB_TOKEN"] == "${{ secrets.FLEET_TOKEN }}"
    names = [s.get("name", s.get("uses")) for s in job["steps"]]
    assert names.index("CRD schemas") < names.index(pipeline["name"])
    assert "python -m pipeline schemas fetch" in step(doc, "CRD schemas")["run"]


def test_the_signing_key_lives_in_a_throwaway_home_removed_whatever_happens(tmp_path: Path) -> None:
    """The import step run as Actions would, with a real exported key; then the clean-up."""
    doc = load(WORKFLOWS / "new-cluster.yml")
    importing = step(doc, "Import the signing key")
    removing = step(doc, "Remove the signing key")
    assert importing["env"] == {"FLEET_SIGNING_KEY": "${{ secrets.FLEET_SIGNING_KEY }}"}
    assert removing["if"] == "always()"
    assert doc["jobs"]["new-cluster"]["steps"][-1] is removing

    signer = signing.ensure_local_key(tmp_path / "source")
    with signing.gpg_env(signer.gnupg_home) as gpg:
        # A subkey as real keys have: its fingerprint must not be taken for the key's.
        subprocess.run(
            [*GPG, "--quick-add-key", signer.fingerprint, "cv25519", "encr", "never"],
            env={**os.environ, **gpg},
            capture_output=True,
            check=True,
        )
        armored = subprocess.run(
            [*GPG, "--armor", "--export-secret-keys", signer.fingerprint],
            env={**os.environ, **gpg},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "PRIVATE KEY BLOCK" in armored
    # A short runner temp: the agent's socket path must fit in sun_path.
    runner_temp = Path(tempfile.mkdtemp(prefix="rt-"))
    try:
        github_env = runner_temp / "github_env"
        imported = run_script(
            importing["run"],
            {"FLEET_SIGNING_KEY": armored, "RUNNER_TEMP": str(runner_temp), "GITHUB_ENV": str(github_env)},
            tmp_path,
        )
        assert imported.returncode == 0, imported.stderr
        home = runner_temp / "gnupg"
        assert github_env.read_text().splitlines() == [
            f"GNUPGHOME={home}",
            f"PIPELINE_SIGNING_KEY={signer.fingerprint}",
        ]
        assert stat.S_IMODE(home.stat().st_mode) == 0o700

        removed = run_script(removing["run"], {"RUNNER_TEMP": str(runner_temp)}, tmp_path)
        assert removed.returncode == 0, removed.stderr
        assert not home.exists()
    finally:
        shutil.rmtree(runner_temp, ignore_errors=True)


def test_an_empty_signing_key_secret_stops_the_run(tmp_path: Path) -> None:
    importing = step(load(WORKFLOWS / "new-cluster.yml"), "Import the signing key")
    result = run_script(
        importing["run"],
        {"FLEET_SIGNING_KEY": "", "RUNNER_TEMP": str(tmp_path), "GITHUB_ENV": str(tmp_path / "env")},
        tmp_path,
    )
    assert result.returncode == 1
    assert "::error::set the secret FLEET_SIGNING_KEY" in result.stdout
    assert not (tmp_path / "env").exists()


# --- plan ---------------------------------------------------------------------------------

# Prints a plan for the cluster named on its command line and exits as PLAN_EXITS says.
_PLAN_STUB = """\
import json, os, sys
assert sys.argv[1:4] == ["-m", "pipeline", "plan"], sys.argv
name = sys.argv[4]
wanted = ["--target", "aws", "--spec", f"clusters/{name}.yaml", "--fleet", os.environ["FLEET"], "--markdown"]
assert sys.argv[5:] == wanted, sys.argv
code = json.loads(os.environ["PLAN_EXITS"]).get(name, 0)
print(f"## Plan: {name} (stub)")
print(f"error: {name} went wrong" if code not in (0, 4) else f"planning {name}", file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture
def pull_request(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository whose pull request changes two specs, removes one and touches a nested file."""
    repo = git_repo(tmp_path / "repo")
    base = commit_files(repo, {"clusters/old.yaml": "name: old\n", "clusters/web.yaml": "name: web\n"}, "base")
    head = commit_files(
        repo,
        {
            "clusters/demo.yaml": "name: demo\n",
            "clusters/web.yaml": "name: web\nregion: eu-west-1\n",
            "clusters/old.yaml": None,
            "clusters/notes/extra.yaml": "not a spec\n",
        },
        "change specs",
    )
    return repo, base, head


def run_plan(repo: Path, base: str, head: str, exits: dict[str, int]) -> tuple[int, dict[str, str], str]:
    plan = step(load(WORKFLOWS / "plan.yml"), "Plan each changed spec")
    runner_temp = repo.parent / "runner"
    runner_temp.mkdir(exist_ok=True)
    output = runner_temp / "github_output"
    output.write_text("")
    stub_python(runner_temp / "bin", _PLAN_STUB)
    result = run_script(
        plan["run"],
        {
            "BASE_SHA": base,
            "HEAD_SHA": head,
            "FLEET": "https://github.example/acme/fleet.git",
            "PLAN_EXITS": json.dumps(exits),
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_OUTPUT": str(output),
            "PATH": f"{runner_temp / 'bin'}{os.pathsep}{os.environ['PATH']}",
        },
        repo,
    )
    assert result.returncode == 0, result.stderr
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    comment = Path(outputs["comment"]).read_text() if "comment" in outputs else ""
    return result.returncode, outputs, comment


def run_spec_check(repo: Path, base: str, head: str) -> subprocess.CompletedProcess[str]:
    checking = step(load(WORKFLOWS / "plan.yml"), "Check the changed specs")
    runner_temp = repo.parent / "runner"
    stub_python(
        runner_temp / "bin",
        "import runpy, sys\nsys.argv = sys.argv[2:]\nrunpy.run_module('pipeline', run_name='__main__')\n",
    )
    env = {
        "BASE_SHA": base,
        "HEAD_SHA": head,
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(runner_temp / "summary"),
        "GITHUB_OUTPUT": str(runner_temp / "output"),
    }
    return run_script(checking["run"], {**env, "PATH": f"{runner_temp / 'bin'}{os.pathsep}{os.environ['PATH']}"}, repo)


def test_plan_checks_the_changed_specs_before_planning(pull_request: tuple[Path, str, str]) -> None:
    repo, base, head = pull_request
    names = [s["name"] for s in load(WORKFLOWS / "plan.yml")["jobs"]["plan"]["steps"] if "name" in s]
    assert names.index("Check the changed specs") < names.index("Plan each changed spec")
    assert run_spec_check(repo, base, head).returncode == 0

    bad = commit_files(repo, {"clusters/web.yaml": "name: web\nnetwork:\n  zones: 9\n"}, "too many zones")
    result = run_spec_check(repo, base, bad)
    assert result.returncode == 2
    assert "::error file=clusters/web.yaml,line=3::clusters/web.yaml:3: spec field 'network.zones'" in result.stderr


def test_plan_takes_exit_4_as_changes_and_comments_each_changed_spec(pull_request: tuple[Path, str, str]) -> None:
    repo, base, head = pull_request
    _, outputs, comment = run_plan(repo, base, head, {"demo": 4, "web": 0})
    assert outputs["failed"] == "false"
    assert comment.startswith("<!-- fleet-pipeline-plan -->\n")
    assert "## Plan: demo (stub)" in comment
    assert "## Plan: web (stub)" in comment
    assert "## Spec removed: `old`" in comment
    assert "extra" not in comment


def test_plan_reports_a_failed_plan_in_the_comment_then_fails(pull_request: tuple[Path, str, str]) -> None:
    repo, base, head = pull_request
    _, outputs, comment = run_plan(repo, base, head, {"demo": 1, "web": 4})
    assert outputs["failed"] == "true"
    assert "## Plan: `demo` failed (exit 1)" in comment
    assert "error: demo went wrong" in comment
    assert "## Plan: web (stub)" in comment
    final = step(load(WORKFLOWS / "plan.yml"), "Fail when a plan failed")
    assert final["if"] == "steps.plan.outputs.failed == 'true'"
    assert "exit 1" in final["run"]


def test_plan_posts_one_comment_found_again_by_its_marker() -> None:
    doc = load(WORKFLOWS / "plan.yml")
    assert doc["on"] == {"pull_request": {"paths": ["clusters/*.yaml"]}}
    assert doc["permissions"] == {}
    assert doc["jobs"]["plan"]["permissions"] == {"contents": "read", "pull-requests": "write", "id-token": "write"}
    aws = [s for s in steps(doc) if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    assert aws[0]["with"]["role-to-assume"] == "${{ vars.AWS_PLAN_ROLE_ARN }}"
    comment = step(doc, "Post or update the plan comment")
    assert comment["uses"].startswith("actions/github-script@")
    script = comment["with"]["script"]
    assert '"<!-- fleet-pipeline-plan -->"' in script
    assert "updateComment" in script
    assert "createComment" in script
    assert step(doc, "Plan each changed spec")["id"] == "plan"


# --- the fleet's own workflow -------------------------------------------------------------


def test_the_fleet_gets_its_verify_workflow_byte_for_byte() -> None:
    files = fleet.initial_files("KEY", "F" * 40)
    assert files[".github/workflows/verify.yml"] == FLEET_TEMPLATE.read_text(encoding="utf-8")
    assert files == fleet.initial_files("KEY", "F" * 40)


def test_the_fleet_workflow_verifies_pull_requests_and_main_read_only() -> None:
    doc = load(FLEET_TEMPLATE)
    assert doc["on"] == {"pull_request": {"branches": ["main"]}, "push": {"branches": ["main"]}}
    assert doc["permissions"] == {}
    assert doc["jobs"]["verify"]["permissions"] == {"contents": "read"}
    install = step(doc, "Install the pipeline")
    assert install["env"] == {"PIPELINE_REPO_URL": "${{ vars.PIPELINE_REPO_URL }}"}
    assert '"fleet-pipeline @ git+$PIPELINE_REPO_URL"' in install["run"]
    verify = step(doc, "Verify")
    assert 'python -m pipeline verify --fleet . --ref "$REF"' in verify["run"]
    checkout = [s for s in steps(doc) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkout[0]["with"]["fetch-depth"] == 0


# Records the command line it was given.
_VERIFY_STUB = """\
import json, os, sys
with open(os.environ["ARGS_FILE"], "w") as out:
    json.dump(sys.argv[1:], out)
"""


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str, str]:
    """Like actions/checkout with full history: main as origin/main, the PR head as a commit."""
    repo = git_repo(tmp_path / "fleet")
    main = commit_files(repo, {"flux/system/keys/trusted.asc": "main's key\n"}, "main")
    git(repo, "update-ref", "refs/remotes/origin/main", main)
    git(repo, "checkout", "-q", "--detach")
    head = commit_files(repo, {"flux/system/keys/trusted.asc": "another key\n"}, "pull request")
    # Actions leaves HEAD on a merge commit; the local main is not necessarily origin/main.
    git(repo, "update-ref", "refs/heads/main", head)
    return repo, main, head


def run_verify(repo: Path, env: dict[str, str]) -> list[str]:
    verify = step(load(FLEET_TEMPLATE), "Verify")
    stub_python(repo.parent / "bin", _VERIFY_STUB)
    args = repo.parent / "args.json"
    result = run_script(
        verify["run"],
        {**env, "ARGS_FILE": str(args), "PATH": f"{repo.parent / 'bin'}{os.pathsep}{os.environ['PATH']}"},
        repo,
    )
    assert result.returncode == 0, result.stderr
    called: list[str] = json.loads(args.read_text())
    return called


@pytest.mark.parametrize(
    ("head_ref", "ref"),
    [("cluster/demo", "cluster/demo"), ("main", "pull/7")],
    ids=["a review branch", "a fork's branch called main"],
)
def test_the_fleet_check_verifies_the_pull_requests_head_against_main(
    checkout: tuple[Path, str, str], head_ref: str, ref: str
) -> None:
    repo, main, head = checkout
    env = {"EVENT": "pull_request", "HEAD_REF": head_ref, "HEAD_SHA": head, "PR_NUMBER": "7"}
    assert run_verify(repo, env) == ["-m", "pipeline", "verify", "--fleet", ".", "--ref", ref]
    assert git(repo, "rev-parse", "refs/heads/main") == main
    assert git(repo, "rev-parse", f"refs/heads/{ref}") == head


def test_the_fleet_check_verifies_main_after_a_push(checkout: tuple[Path, str, str]) -> None:
    repo, main, _ = checkout
    env = {"EVENT": "push", "HEAD_REF": "", "HEAD_SHA": main, "PR_NUMBER": ""}
    assert run_verify(repo, env) == ["-m", "pipeline", "verify", "--fleet", ".", "--ref", "main"]
    assert git(repo, "rev-parse", "refs/heads/main") == main


# --- the workflows' supply chain -------------------------------------------------------------

ZIZMOR = Path(sys.executable).parent / "zizmor"
# A tag can be moved to other code; a commit cannot. The comment says which release it is.
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@(?P<sha>[0-9a-f]{40}) # (?P<version>v\d+\.\d+\.\d+)")
USES_LINE = re.compile(r"^\s*(- )?uses:\s*(?P<ref>.*?)\s*$")


def uses_lines(path: Path) -> list[str]:
    """Each `uses:` as written, trailing comment included (YAML drops the comment)."""
    return [m["ref"] for line in path.read_text(encoding="utf-8").splitlines() if (m := USES_LINE.match(line))]


def test_the_actions_security_analyser_finds_nothing_in_any_workflow() -> None:
    # The pedantic persona: code smells count too, not only likely vulnerabilities. No config
    # file either: an audit is waived only inline, beside the line it is waived for.
    ran = subprocess.run(
        [str(ZIZMOR), "--offline", "--persona=pedantic", "--no-config", "--format=json", *map(str, ALL)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.stdout.strip(), ran.stderr
    findings: list[dict[str, Any]] = json.loads(ran.stdout)
    assert findings == [], "\n".join(map(finding, findings))


def finding(found: dict[str, Any]) -> str:
    """One of zizmor's JSON findings as a line: what, how bad, and where."""
    where = found["locations"][0]
    path = where["symbolic"]["key"].get("Local", {}).get("verbatim_path", "?")
    row = where["concrete"]["location"]["start_point"]["row"] + 1
    return f"{path}:{row}: {found['ident']} ({found['determinations']['severity']}): {found['desc']}"


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(ROOT).as_posix() for p in ALL])
def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it(path: Path) -> None:
    written = uses_lines(path)
    assert len(written) == len([s for s in steps(load(path)) if "uses" in s]), "a uses: the line scan missed"
    assert written
    assert [u for u in written if not PINNED.fullmatch(u)] == []


def test_each_action_is_the_same_release_everywhere() -> None:
    releases: dict[str, set[str]] = {}
    for path in ALL:
        for ref in uses_lines(path):
            action, pin = ref.split("@", 1)
            releases.setdefault(action, set()).add(pin)
    assert {action: pins for action, pins in releases.items() if len(pins) > 1} == {}


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(ROOT).as_posix() for p in ALL])
def test_no_checkout_leaves_its_credentials_behind(path: Path) -> None:
    """No step pushes with the checkout's token, so none is left in .git/config for later steps."""
    checkouts = [s for s in steps(load(path)) if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts
    assert all(s.get("with", {}).get("persist-credentials") is False for s in checkouts)


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(ROOT).as_posix() for p in ALL])
def test_the_token_has_no_permission_but_what_each_job_declares(path: Path) -> None:
    doc = load(path)
    assert doc["permissions"] == {}
    for name, job in doc["jobs"].items():
        assert job.get("permissions"), f"job {name!r} takes the default token permissions"


# --- apply: what was reviewed, on merge ---------------------------------------------------


def reviewed_comment(tmp_path: Path) -> tuple[Path, str]:
    """The plan workflow's comment as the pipeline writes it, for demo only; and demo's plan hash."""
    cluster = spec.parse(spec_source.read("name: demo\nnetwork:\n  cidr: 10.20.0.0/16\n", "demo.yaml"), "demo")
    planned = plan.ClusterPlan(cluster, NetworkPlan(PlanSummary(0, 0, 0), (), (), None, digest="x"), None, "")
    comment = tmp_path / "runner" / "plan-comment.md"
    comment.parent.mkdir(parents=True, exist_ok=True)
    # A marker quoted in a line of text is not the bot's own line.
    quoted = "Someone wrote `<!-- fleet-pipeline-plan-hash web sha256:" + "0" * 64 + " -->` here.\n"
    comment.write_text("<!-- fleet-pipeline-plan -->\n\n" + plan.to_markdown(planned) + quoted)
    return comment, planned.plan_hash


def run_apply_matrix(repo: Path, before: str, after: str) -> dict[str, str]:
    matrix = step(load(WORKFLOWS / "apply.yml"), "Changed specs and their plan hashes")
    runner_temp = repo.parent / "runner"
    output = runner_temp / "github_output"
    output.write_text("")
    env = {"BEFORE": before, "AFTER": after, "RUNNER_TEMP": str(runner_temp), "GITHUB_OUTPUT": str(output)}
    result = run_script(matrix["run"], env, repo)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


def test_apply_runs_on_main_with_one_job_per_changed_spec_and_its_posted_hash(
    tmp_path: Path, pull_request: tuple[Path, str, str]
) -> None:
    # The pull request's changes, merged with one more spec whose file name is not a cluster's.
    repo, before, _ = pull_request
    after = commit_files(repo, {"clusters/Not_A_Name.yaml": "name: x\n"}, "merge")
    _, demo_hash = reviewed_comment(tmp_path)

    outputs = run_apply_matrix(repo, before, after)

    # web's hash is missing from the comment: its job is there, to refuse it.
    assert json.loads(outputs["matrix"]) == {
        "include": [
            {"cluster": "demo", "spec": "clusters/demo.yaml", "plan_hash": demo_hash},
            {"cluster": "web", "spec": "clusters/web.yaml", "plan_hash": ""},
        ]
    }
    assert outputs["clusters"] == "2"


def test_apply_with_no_changed_spec_has_no_job(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    before = commit_files(repo, {"clusters/web.yaml": "name: web\n"}, "base")
    after = commit_files(repo, {"clusters/web.yaml": None}, "remove")
    reviewed_comment(tmp_path)
    assert run_apply_matrix(repo, before, after) == {"matrix": '{"include":[]}', "clusters": "0"}
    assert load(WORKFLOWS / "apply.yml")["jobs"]["apply"]["if"] == "needs.reviewed.outputs.clusters != '0'"


def test_apply_refuses_a_cluster_without_a_hash_before_anything_runs(tmp_path: Path) -> None:
    doc = load(WORKFLOWS / "apply.yml")
    refusing = step(doc, "Refuse a cluster without a reviewed plan")
    assert doc["jobs"]["apply"]["steps"][0] == refusing
    env = {"CLUSTER": "web", "SPEC": "clusters/web.yaml"}
    refused = run_script(refusing["run"], {**env, "PLAN_HASH": ""}, tmp_path)
    assert refused.returncode == 1
    assert "::error file=clusters/web.yaml::no plan hash for web" in refused.stdout
    assert run_script(refusing["run"], {**env, "PLAN_HASH": "sha256:" + "1" * 64}, tmp_path).returncode == 0


def test_apply_passes_the_hash_to_new_cluster_one_cluster_at_a_time() -> None:
    doc = load(WORKFLOWS / "apply.yml")
    assert doc["on"] == {"push": {"branches": ["main"], "paths": ["clusters/*.yaml"]}}
    assert doc["permissions"] == {}
    assert doc["jobs"]["reviewed"]["permissions"] == {"contents": "read", "pull-requests": "read"}
    job = doc["jobs"]["apply"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.reviewed.outputs.matrix) }}"
    assert job["strategy"]["fail-fast"] is False
    # The same group as new-cluster.yml's, never cancelled: one cluster's applies queue.
    assert job["concurrency"] == {"group": "new-cluster-${{ matrix.cluster }}", "cancel-in-progress": False}
    applying = step(doc, "Apply the reviewed plan")
    assert applying["run"].split() == [
        *("python", "-m", "pipeline", "new-cluster", '"$CLUSTER"', "--target", "aws", "--spec", '"$SPEC"'),
        *("--review", "github", "--fleet", '"$FLEET"', "--expect-plan", '"$PLAN_HASH"'),
    ]
    assert applying["env"]["PLAN_HASH"] == "${{ matrix.plan_hash }}"
    assert applying["env"]["GITHUB_TOKEN"] == "${{ secrets.FLEET_TOKEN }}"
    script = step(doc, "Find the merged pull request's plan comment")["with"]["script"]
    assert 'c.user.login === "github-actions[bot]"' in script
    assert "p.merge_commit_sha === context.sha" in script


# --- drift: every cluster planned, one issue each -----------------------------------------

# `list --json` names the fleet's clusters; `drift` exits as DRIFT_EXIT says.
_DRIFT_STUB = """\
import json, os, sys
args = sys.argv[1:]
if args[:3] == ["-m", "pipeline", "list"]:
    assert args[3:] == ["--target", "aws", "--fleet", os.environ["FLEET"], "--json"], args
    print(json.dumps({"clusters": [{"name": n} for n in ("demo", "web", "gone")]}))
    sys.exit(0)
fleet = os.environ["FLEET"]
assert args[:6] == ["-m", "pipeline", "drift", "demo", "--target", "aws"], args
assert args[6:] == ["--spec", "clusters/demo.yaml", "--fleet", fleet, "--issues-repo", "acme/specs"], args
sys.exit(int(os.environ["DRIFT_EXIT"]))
"""


def drift_env(tmp_path: Path) -> dict[str, str]:
    runner_temp = tmp_path / "runner"
    stub_python(runner_temp / "bin", _DRIFT_STUB)
    (runner_temp / "github_output").write_text("")
    return {
        "FLEET": "https://github.example/acme/fleet.git",
        "GITHUB_REPOSITORY": "acme/specs",
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(runner_temp / "github_output"),
        "PATH": f"{runner_temp / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }


def test_drift_plans_each_fleet_cluster_that_has_a_spec(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    commit_files(repo, {f"clusters/{n}.yaml": f"name: {n}\n" for n in ("demo", "web", "new")}, "specs")
    env = drift_env(tmp_path)

    listed = run_script(step(load(WORKFLOWS / "drift.yml"), "Clusters with a spec")["run"], env, repo)

    assert listed.returncode == 0, listed.stderr
    outputs = dict(line.split("=", 1) for line in Path(env["GITHUB_OUTPUT"]).read_text().splitlines())
    # gone has no spec here, new is not in the fleet yet: neither can drift.
    assert json.loads(outputs["matrix"]) == {
        "include": [{"cluster": "demo", "spec": "clusters/demo.yaml"}, {"cluster": "web", "spec": "clusters/web.yaml"}]
    }
    assert outputs["clusters"] == "2"


@pytest.mark.parametrize(("code", "job"), [(0, 0), (4, 0), (1, 1), (2, 2)])
def test_drift_found_is_the_issue_s_news_not_a_failed_job(tmp_path: Path, code: int, job: int) -> None:
    doc = load(WORKFLOWS / "drift.yml")
    keeping = step(doc, "Plan and keep the drift issue")
    env = {**drift_env(tmp_path), "CLUSTER": "demo", "SPEC": "clusters/demo.yaml", "DRIFT_EXIT": str(code)}
    assert run_script(keeping["run"], env, tmp_path).returncode == job
    # The fleet is read with its token, the issues written with the job's own.
    assert keeping["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert "$FLEET_READ_TOKEN" in keeping["env"]["GIT_CONFIG_VALUE_0"]


def test_drift_runs_on_a_schedule_with_issues_write_only_where_they_are_kept() -> None:
    doc = load(WORKFLOWS / "drift.yml")
    assert set(doc["on"]) == {"schedule", "workflow_dispatch"}
    assert doc["permissions"] == {}
    assert doc["jobs"]["clusters"]["permissions"] == {"contents": "read", "id-token": "write"}
    job = doc["jobs"]["drift"]
    assert job["permissions"] == {"contents": "read", "issues": "write", "id-token": "write"}
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.clusters.outputs.matrix) }}"
    assert job["concurrency"] == {"group": "drift-${{ matrix.cluster }}", "cancel-in-progress": False}
    aws = [s for s in steps(doc) if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    assert {s["with"]["role-to-assume"] for s in aws} == {"${{ vars.AWS_PLAN_ROLE_ARN }}"}
