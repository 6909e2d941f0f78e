from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import journal
from pipeline.cli import main
from pipeline.errors import EXIT_BAD_INPUT, EXIT_BLOCKED


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path: Path):
    spec = tmp_path / "demo.yaml"
    spec.write_text("name: demo\ncontrolPlane:\n  replicas: 2\n")
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", str(spec))
    assert result.returncode == EXIT_BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: spec field 'controlPlane.replicas': 2 control plane machines cannot keep etcd quorum; "
        "use an odd number: 1, 3 or 5"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.yaml"]


@pytest.mark.parametrize("name", ["../evil", "Demo", "a" * 40, "x/y"])
def test_a_bad_cluster_name_is_refused_before_anything_is_written(tmp_path: Path, name: str):
    result = run_cli(tmp_path, "new-cluster", name)
    assert result.returncode == EXIT_BAD_INPUT
    assert "spec field 'name'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_missing_spec_file_is_bad_input(tmp_path: Path):
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "nope.yaml")
    assert result.returncode == EXIT_BAD_INPUT
    assert "--spec nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_in_github_actions_a_spec_error_is_an_annotation_on_its_line(tmp_path: Path):
    spec = tmp_path / "demo.yaml"
    spec.write_text("name: demo\nnetwork:\n  zones: 2\n  natGateway: single\n")
    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "demo.yaml", env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.startswith("::error file=demo.yaml,line=4::spec field 'network.natGateway'")
    assert "did you mean 'natGateways'" in result.stderr


def test_a_second_run_for_the_same_cluster_is_blocked_naming_the_holder(tmp_path: Path):
    state = tmp_path / ".pipeline"
    with journal.run(state / "runs", "demo", "new-cluster") as held:
        result = run_cli(tmp_path, "new-cluster", "demo", env={"PIPELINE_STATE_DIR": str(state)})
    assert result.returncode == EXIT_BLOCKED
    assert held.record["run"] in result.stderr


@pytest.mark.parametrize(
    "command",
    ["new-cluster", "approve", "merge", "verify", "keys", "local", "schemas", "list", "status", "delete-cluster"],
)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "example: python -m pipeline" in capsys.readouterr().out


def test_keys_export_before_any_fleet_prints_the_key_a_new_fleet_will_trust(tmp_path: Path):
    result = run_cli(tmp_path, "keys", "export", env={"PIPELINE_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_approve_without_a_fleet_says_what_to_do(tmp_path: Path):
    result = run_cli(tmp_path, "approve", "demo", env={"PIPELINE_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) <= 3
    assert "Traceback" not in result.stderr
