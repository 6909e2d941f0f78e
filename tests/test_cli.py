from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from pipeline import journal
from pipeline.cli import JSON_HELP, main, use_color
from pipeline.commands import new_cluster
from pipeline.errors import EXIT_BAD_INPUT, EXIT_BLOCKED
from pipeline.model import CommitResult, Manifest, Manifests, NetworkResult, PlanSummary
from pipeline.report import Reporter
from tests.fixtures_render import sample_outputs, sample_spec

BAD_SPEC = "name: demo\ncontrolPlane:\n  replicas: 2\n"
BAD_SPEC_ERROR = (
    "spec field 'controlPlane.replicas': 2 control plane machines cannot keep etcd quorum; use an odd number: 1, 3 or 5"
)


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Run as at a developer's shell even when the tests run in GitHub Actions: only `env` says otherwise.
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("GITHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def observed(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed run showed, for the reliability report: its exit code and the last line of its stderr."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return f"exit {result.returncode}: {lines[-1] if lines else '(nothing on stderr)'}"


@pytest.mark.reliability("bad input", "new-cluster --spec with an even controlPlane.replicas (2)")
def test_a_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, record_property):
    spec = tmp_path / "demo.yaml"
    spec.write_text(BAD_SPEC)
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", str(spec))
    record_property("outcome", observed(result))
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [f"error: {BAD_SPEC_ERROR}"]
    assert result.stdout == ""
    assert "\033[" not in result.stderr  # not a terminal: no colour
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.yaml"]


@pytest.mark.reliability("bad input", "new-cluster --json --spec with an even controlPlane.replicas (2)")
def test_with_json_a_bad_spec_is_one_json_object_on_stdout_and_one_line_on_stderr(tmp_path: Path, record_property):
    (tmp_path / "demo.yaml").write_text(BAD_SPEC)
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "demo.yaml", "--json")
    record_property("outcome", f"{observed(result)}; stdout {result.stdout.strip()}")
    assert result.returncode == EXIT_BAD_INPUT
    assert json.loads(result.stdout) == {"error": BAD_SPEC_ERROR, "exit_code": EXIT_BAD_INPUT}
    assert result.stderr.strip().splitlines() == [f"error: {BAD_SPEC_ERROR}"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "painted"), [(None, True), ("1", False), ("", True)])
def test_colour_at_a_terminal_unless_no_color_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_color: str | None, painted: bool
):
    (tmp_path / "demo.yaml").write_text(BAD_SPEC)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["new-cluster", "demo", "--spec", "demo.yaml"]) == EXIT_BAD_INPUT
    assert ("\033[" in terminal.getvalue()) is painted
    assert BAD_SPEC_ERROR in terminal.getvalue()


def test_colour_needs_a_terminal():
    assert not use_color(io.StringIO(), {})
    assert use_color(Terminal(), {})


@pytest.mark.reliability("bad input", "new-cluster with an invalid cluster name")
@pytest.mark.parametrize("name", ["../evil", "Demo", "a" * 40, "x/y"])
def test_a_bad_cluster_name_is_refused_before_anything_is_written(tmp_path: Path, name: str, record_property):
    result = run_cli(tmp_path, "new-cluster", name)
    record_property("outcome", observed(result))
    assert result.returncode == EXIT_BAD_INPUT
    assert "spec field 'name'" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.reliability("bad input", "new-cluster --spec naming a file that does not exist")
def test_a_missing_spec_file_is_bad_input(tmp_path: Path, record_property):
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "nope.yaml")
    record_property("outcome", observed(result))
    assert result.returncode == EXIT_BAD_INPUT
    assert "--spec nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.reliability("bad input", "new-cluster in GitHub Actions with a misspelt spec field (natGateway)")
def test_in_github_actions_a_spec_error_is_an_annotation_on_its_line(tmp_path: Path, record_property):
    spec = tmp_path / "demo.yaml"
    spec.write_text("name: demo\nnetwork:\n  zones: 2\n  natGateway: single\n")
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "demo.yaml", env={"GITHUB_ACTIONS": "true"})
    record_property("outcome", observed(result))
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.startswith("::error file=demo.yaml,line=4::spec field 'network.natGateway'")
    assert "did you mean 'natGateways'" in result.stderr


@pytest.mark.reliability("bad input", "new-cluster --json in GitHub Actions, bad spec in a file named a,b.yaml")
def test_in_github_actions_with_json_the_annotation_names_an_escaped_file_and_stdout_is_json(
    tmp_path: Path, record_property
):
    (tmp_path / "a,b.yaml").write_text(BAD_SPEC)
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "a,b.yaml", "--json", env={"GITHUB_ACTIONS": "true"})
    record_property("outcome", observed(result))
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [f"::error file=a%2Cb.yaml,line=3::{BAD_SPEC_ERROR}"]
    assert json.loads(result.stdout)["exit_code"] == EXIT_BAD_INPUT


@pytest.mark.reliability("fault", "new-cluster while another run holds the cluster's run lock")
def test_a_second_run_for_the_same_cluster_is_blocked_naming_the_holder(tmp_path: Path, record_property):
    state = tmp_path / ".pipeline"
    with journal.run(state / "runs", "demo", "new-cluster") as held:
        result = run_cli(tmp_path, "new-cluster", "demo", env={"PIPELINE_STATE_DIR": str(state)})
    shown = observed(result).replace(held.record["run"], "<run id>").replace(f"pid {os.getpid()}", "pid <pid>")
    record_property("outcome", shown)
    assert result.returncode == EXIT_BLOCKED
    assert held.record["run"] in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        "new-cluster",
        "approve",
        "merge",
        "verify",
        "keys",
        "local",
        "schemas",
        "list",
        "status",
        "delete-cluster",
        "plan",
    ],
)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "example: python -m pipeline" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        "new-cluster",
        "plan",
        "approve",
        "merge",
        "delete-cluster",
        "list",
        "status",
        "verify",
        "keys",
        "schemas",
        "local",
    ],
)
def test_every_json_flag_promises_the_same(command: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert " ".join(JSON_HELP.split()) in " ".join(capsys.readouterr().out.split())


def test_new_cluster_with_json_ends_with_one_object_naming_what_it_made_and_what_is_next():
    progress, out = io.StringIO(), io.StringIO()
    head = "0123456789abcdef0123456789abcdef01234567"
    ended = new_cluster.finished(
        sample_spec(),
        NetworkResult(sample_outputs(), PlanSummary(add=27, change=0, destroy=0), state_serial=1),
        Manifests("demo", (Manifest("clusters/demo/cluster.yaml", "x"),)),
        CommitResult("cluster/demo", head, changed=True, signer="ABCDEF"),
        pull=None,
        on_main_already=False,
    )
    Reporter(progress, out=out, as_json=True).finish(ended)
    shown = json.loads(out.getvalue())
    assert {key: shown[key] for key in ("cluster", "region", "vpc_id", "vpc_cidr", "commit", "changed", "branch")} == {
        "cluster": "demo",
        "region": "us-east-1",
        "vpc_id": "vpc-0abc1234",
        "vpc_cidr": "10.20.0.0/16",
        "commit": head,
        "changed": True,
        "branch": "cluster/demo",
    }
    assert shown["pull_request"] is None
    assert shown["next"] == "review and approve it: python -m pipeline approve demo"
    assert progress.getvalue().splitlines()[-1] == "next: review and approve it: python -m pipeline approve demo"


def test_keys_export_before_any_fleet_prints_the_key_a_new_fleet_will_trust(tmp_path: Path):
    result = run_cli(tmp_path, "keys", "export", env={"PIPELINE_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


@pytest.mark.reliability("bad input", "approve before any fleet repo exists")
def test_approve_without_a_fleet_says_what_to_do(tmp_path: Path, record_property):
    result = run_cli(tmp_path, "approve", "demo", env={"PIPELINE_STATE_DIR": str(tmp_path / "state")})
    record_property("outcome", observed(result))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) <= 3
    assert "Traceback" not in result.stderr


# The CLI in a child whose files may not grow past a few bytes, as on a full disk; Python
# already ignores SIGXFSZ, so a write fails with EFBIG instead of killing the process.
_FULL_DISK = (
    "import resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.reliability("fault", "the disk fills up as new-cluster starts writing its run journal")
def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path: Path, record_property):
    state = tmp_path / ".pipeline"
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, "new-cluster", "demo"],
        cwd=tmp_path,
        env={**os.environ, "PIPELINE_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: File too large: free disk space and run again; the next run resumes"
    )
    assert "Traceback" not in result.stderr and not (state / "crash.log").exists()
    assert not list((state / "runs").glob("*.tmp"))
    assert not (tmp_path / "fleet.git").exists()
    record_property("outcome", f"{observed(result)}; no partial journal file, no fleet, no crash log")


@pytest.mark.reliability("bad input", "new-cluster with image.ami naming an AMI the region does not have")
def test_an_ami_that_does_not_exist_is_one_line_exit_2_before_anything_is_written(
    tmp_path: Path, moto_endpoint: str, record_property
):
    (tmp_path / "demo.yaml").write_text("name: demo\nimage:\n  ami:\n    us-east-1: ami-0123456789abcdef0\n")
    result = run_cli(
        tmp_path,
        "new-cluster",
        "demo",
        "--spec",
        "demo.yaml",
        env={"PIPELINE_AWS_ENDPOINT": moto_endpoint, "PIPELINE_STATE_BUCKET": "never-made"},
    )
    record_property("outcome", observed(result))

    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [
        "error: spec field 'image.ami.us-east-1': ami-0123456789abcdef0 does not exist in us-east-1; "
        "give an AMI id of that region"
    ]
    # The run's journal says it failed; no fleet, no claim, no Terraform work dir, no state bucket.
    assert not (tmp_path / "fleet.git").exists()
    assert not (tmp_path / ".pipeline" / "terraform").exists()
    s3 = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert "never-made" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_ctrl_c_reaches_the_pipeline_even_when_it_was_started_with_it_ignored(tmp_path: Path):
    # What a script's background job (`cmd &`) gets: SIGINT ignored, which Terraform does not honour.
    probe = (
        "import signal, sys\n"
        "from pipeline.cli import main\n"
        "assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN\n"
        "main(['spec', 'schema'])\n"
        "sys.stderr.write(str(signal.getsignal(signal.SIGINT) is signal.default_int_handler))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "True"
