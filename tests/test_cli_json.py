"""Every command of the parser, run as a script runs it with --json, ends with one JSON object on stdout.

The commands are read from the parser itself, so a command added later is run here too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline import cli, fleet, render
from pipeline.approve import approve_cluster
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.errors import EXIT_BAD_INPUT
from pipeline.signing import Signer
from tests import fleet_calls
from tests.fixtures_render import sample_outputs, sample_spec
from tests.test_cli import run_cli
from tests.test_schemas import serve

CLUSTER = "demo"
# A spec as a user writes one, valid, whose image AWS does not have: new-cluster stops at its pre-flight,
# before Terraform runs.
SPEC = "name: demo\nimage:\n  ami:\n    us-east-1: ami-0123456789abcdef0\n"


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command (`spec check` is one) with its own parser, in the order the parser lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaves(sub, (*path, name))
    return found or [(path, parser)]


def invocations(parser: argparse.ArgumentParser, spec: Path) -> list[list[str]]:
    """The argument lists that run a command: one per choice of its positional, NAME the fleet's cluster,
    FILE the spec; an optional positional left out, the spec passed wherever it is taken."""
    runs: list[list[str]] = [[]]
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        if action.choices is not None:
            runs = [[*run, str(choice)] for run in runs for choice in action.choices]
        elif action.metavar == "NAME":
            runs = [[*run, CLUSTER] for run in runs]
        elif action.metavar == "FILE":
            runs = [[*run, str(spec)] for run in runs]
        elif action.nargs != "?":
            raise AssertionError(f"no value known for {action.metavar or action.dest}: teach invocations() one")
    extra = ["--spec", str(spec)] if "--spec" in parser._option_string_actions else []
    return [[*run, *extra, "--json"] for run in runs]


@pytest.fixture
def fleet_with_a_cluster(settings: Settings, fleet_signer: Signer) -> Settings:
    """The fleet new-cluster and approve leave: its layout, and one rendered cluster landed on main."""
    spec, outputs = sample_spec(name=CLUSTER), sample_outputs()
    manifests = render.render(spec, outputs, PROJECT_ROOT / "templates", fleet.LOCAL_MANAGEMENT_CIDRS)
    fleet_calls.commit(manifests, settings, fleet_signer, {"Pipeline-Run": "run-1"}, "create demo")
    approve_cluster(CLUSTER, settings, fleet_signer)
    return settings


def test_every_command_with_json_prints_one_json_object_success_or_failure(
    fleet_with_a_cluster: Settings, moto_endpoint: str, tmp_path: Path
) -> None:
    settings = fleet_with_a_cluster
    spec = tmp_path / "demo.yaml"
    spec.write_text(SPEC)
    commands = leaves(cli._parser())
    assert [" ".join(path) for path, parser in commands if "--json" not in parser._option_string_actions] == []
    argvs = [[*path, *argv] for path, parser in commands for argv in invocations(parser, spec)]
    argvs.append(["verify", "--ref", "refs/pull/404/head", "--json"])
    with (
        contextlib.contextmanager(serve)(Path(str(settings.crds_dir))) as mirror,
        concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool,
    ):
        env = {"PIPELINE_AWS_ENDPOINT": moto_endpoint, "PIPELINE_CRDS_MIRROR": mirror.url}
        # Each run starts from a copy of the same fleet and state: what one changes, no other sees.
        runs = {
            _label(argv, spec): pool.submit(_run_on_a_copy, settings, tmp_path / f"run-{index}", argv, env)
            for index, argv in enumerate(argvs)
        }
        shown = {label: _one_object(label, run.result()) for label, run in runs.items()}
        for_people = run_cli(tmp_path, "keys", "export", env=_env_of(settings))

    assert shown["new-cluster demo"] == {
        "error": "spec field 'image.ami.us-east-1': ami-0123456789abcdef0 does not exist in us-east-1; "
        "give an AMI id of that region",
        "exit_code": EXIT_BAD_INPUT,
    }
    assert [key for key in _SUCCEEDING if "error" in shown[key]] == []
    exported = shown["keys export"]["keys"]
    assert isinstance(exported, list) and exported[0].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert (shown["verify"]["verified"], shown["verify"]["clusters"]) == (True, [CLUSTER])
    assert shown["list"]["clusters"] == [shown["status demo"]]
    assert shown["status demo"]["name"] == CLUSTER
    assert (shown["local up"]["url"], shown["local status"]["running"]) == (moto_endpoint, True)
    assert shown["local down"] == {"stopped": False}  # an endpoint it did not start is not its to stop
    assert len(shown["schemas fetch"]["files"]) > 0  # type: ignore[arg-type]
    assert shown["verify --ref refs/pull/404/head"] == {
        "error": f"--ref 'refs/pull/404/head' is no branch, commit or ref of {tmp_path / f'run-{len(argvs) - 1}'}"
        "/fleet.git; give a branch name, a commit id (full or abbreviated) or refs/pull/N/head",
        "exit_code": EXIT_BAD_INPUT,
    }
    assert shown["delete-cluster demo"]["next"] == f"python -m pipeline approve {CLUSTER}"
    # Without --json the key alone, as `keys export > fleet-keys.asc` keeps it.
    assert for_people.stdout == "".join(exported)


# What succeeds on the fleet above, with the spec above.
_SUCCEEDING = (
    "delete-cluster demo",
    "verify",
    "keys export",
    "list",
    "status demo",
    "schemas fetch",
    "local up",
    "local down",
    "local status",
    "spec schema",
    "spec check FILE",
    "spec show demo",
)


def _one_object(label: str, result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The one JSON object a run printed; a failure's is its one-line error and its exit code."""
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError as err:
        raise AssertionError(f"{label}: stdout is not one JSON object ({err}): {result.stdout!r}") from err
    assert isinstance(data, dict), label
    if "error" in data:
        assert data["exit_code"] == result.returncode, label
        assert result.stderr.strip().splitlines()[-1] == f"error: {data['error']}", label
    else:
        assert "Traceback" not in result.stderr, label
    return data


def _run_on_a_copy(
    settings: Settings, work: Path, argv: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    shutil.copytree(settings.fleet, work / "fleet.git")
    # Not the gpg-agent's sockets or the home's lock: the copy's own agent makes its own.
    shutil.copytree(settings.state_dir, work / "state", ignore=shutil.ignore_patterns("S.*", "*.lock"))
    copy = {"PIPELINE_STATE_DIR": str(work / "state"), "PIPELINE_FLEET": str(work / "fleet.git")}
    return run_cli(work, *argv, env={**env, **copy})


def _env_of(settings: Settings) -> dict[str, str]:
    return {"PIPELINE_STATE_DIR": str(settings.state_dir), "PIPELINE_FLEET": settings.fleet}


def _label(argv: list[str], spec: Path) -> str:
    """The command line without its --json, the spec passed to it, and its paths: `spec check FILE`."""
    return " ".join(argv[: argv.index("--json")]).replace(f" --spec {spec}", "").replace(str(spec), "FILE")


@pytest.mark.parametrize("path", [path for path, _ in leaves(cli._parser())], ids=" ".join)
def test_a_usage_error_of_any_command_with_json_is_one_json_object_and_exit_2(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*path, "--json", "--no-such-flag"]) == EXIT_BAD_INPUT

    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert shown["exit_code"] == EXIT_BAD_INPUT
    # A missing argument is the command's own error; a flag no parser knows, the top parser's.
    assert shown["error"].startswith("python -m pipeline")
    assert err.startswith("usage: python -m pipeline")
    assert err.splitlines()[-1] == f"error: {shown['error']}"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["list", "--json", "--bogus"], "python -m pipeline: unrecognized arguments: --bogus"),
        (["status", "--json"], "python -m pipeline status: the following arguments are required: NAME"),
        (
            ["local", "sideways", "--json"],
            "python -m pipeline local: argument action: invalid choice: 'sideways' "
            "(choose from 'up', 'down', 'status')",
        ),
    ],
    ids=["unknown flag", "missing argument", "bad choice"],
)
def test_a_usage_error_says_what_and_where_help_is_in_json_with_usage_on_stderr(
    tmp_path: Path, argv: list[str], problem: str
) -> None:
    result = run_cli(tmp_path, *argv)

    prog = problem.split(":", 1)[0]
    message = f"{problem}; see `{prog} --help`"
    assert (result.returncode, json.loads(result.stdout)) == (EXIT_BAD_INPUT, {"error": message, "exit_code": 2})
    assert result.stderr.startswith("usage: python -m pipeline ")
    assert result.stderr.splitlines()[-1] == f"error: {message}"


def test_without_json_a_usage_error_leaves_stdout_empty(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "verify", "--bogus")

    assert (result.returncode, result.stdout) == (EXIT_BAD_INPUT, "")
    assert result.stderr.splitlines()[-1] == (
        "error: python -m pipeline: unrecognized arguments: --bogus; see `python -m pipeline --help`"
    )


def test_in_github_actions_verify_writes_its_verdict_to_the_job_summary(
    settings: Settings, fleet_signer: Signer, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = run_cli(tmp_path, "verify", "--json", env={**_env_of(settings), **actions})

    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    head = verdict["commit"]
    assert summary.read_text() == (
        "### Verify `main`: verified\n\n"
        f"- fleet verified: main at {head} signed by {fleet_signer.fingerprint}, 0 clusters\n\n"
    )
