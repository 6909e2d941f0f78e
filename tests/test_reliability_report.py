"""The reliability plugin and report: a tiny suite run by pytest in a subprocess, its JSON and its markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "reliability_report.py"

SAMPLE = """
import pytest


@pytest.mark.reliability("bad input", "a number that is not one")
def test_bad_number(record_property, request):
    try:
        int("x")
    except ValueError as error:
        where = "/tmp/pytest-of-someone/pytest-7/popen-gw1/test_bad_number0/spec.yaml"
        record_property(
            "outcome",
            f"{error} in {where} via 127.0.0.1:43123 from {request.config.rootpath}/x.tf"
            " by 0123456789ABCDEF0123456789ABCDEF01234567",
        )


@pytest.mark.reliability("fault", "a fault whose outcome the test forgot")
def test_forgot():
    pass


@pytest.mark.reliability("secret", "one marker for all cases")
@pytest.mark.parametrize("value", ["a|b", "c"])
def test_one_marker(value, record_property):
    record_property("outcome", f"saw {value}")


@pytest.mark.parametrize("value", [pytest.param(1, marks=pytest.mark.reliability("bad input", "case one")), 2])
def test_per_case(value, record_property):
    record_property("outcome", f"saw {value}")


@pytest.mark.reliability("fault", "a test that fails")
def test_fails(record_property):
    record_property("outcome", "observed before failing")
    assert 1 == 2


@pytest.mark.reliability("fault", "a skipped one")
def test_skipped():
    pytest.skip("not here")


@pytest.mark.reliability("typo", "a kind that does not exist")
def test_bad_kind():
    pass


def test_unmarked(record_property):
    record_property("outcome", "not reported")
"""


def run_pytest(where: Path, report: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    # Only the plugin under test (and xdist where asked for): a second, not three, per run.
    env.update(PYTHONPATH=str(REPO_ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    options = ["-p", "no:cacheprovider", "-p", "tests.reliability", "-q", f"--basetemp={where / 'basetemp'}"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, f"--reliability-report={report}", *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def render(report: Path, markdown: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(report), str(markdown)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("suite")
    (where / "pytest.ini").write_text("[pytest]\n")
    (where / "test_sample.py").write_text(SAMPLE)
    return where


@pytest.fixture(scope="module")
def report(suite: Path) -> dict[str, Any]:
    ran = run_pytest(suite, suite / "report.json")
    assert ran.returncode == 1, ran.stdout + ran.stderr  # test_fails failed
    assert "@pytest.mark.reliability takes (kind, what)" in ran.stdout  # test_bad_kind errors at setup
    assert f"reliability report: 7 marked tests -> {suite / 'report.json'}" in ran.stdout
    assert "ERROR test_sample.py::test_forgot: passed without recording an outcome" in ran.stdout
    loaded: dict[str, Any] = json.loads((suite / "report.json").read_text())
    return loaded


def test_one_entry_per_marked_test_that_ran_sorted_by_kind_then_test(suite: Path, report: dict[str, Any]):
    entries = {e["nodeid"].removeprefix("test_sample.py::"): e for e in report["entries"]}
    assert [(e["kind"], e["nodeid"]) for e in report["entries"]] == sorted(
        (e["kind"], e["nodeid"]) for e in entries.values()
    )
    assert sorted(entries) == [
        "test_bad_number",
        "test_fails",
        "test_forgot",
        "test_one_marker[a|b]",
        "test_one_marker[c]",
        "test_per_case[1]",
        "test_skipped",
    ]
    assert all(
        set(e) == {"nodeid", "kind", "what", "outcome", "result", "detail", "duration", "error"}
        for e in entries.values()
    )
    assert all(isinstance(e["duration"], float) and e["duration"] >= 0 for e in entries.values())

    assert entries["test_bad_number"]["outcome"].startswith(
        "invalid literal for int() with base 10: 'x' in /tmp/pytest-of-"
    )
    assert entries["test_per_case[1]"] | {"duration": 0} == {
        "nodeid": "test_sample.py::test_per_case[1]",
        "kind": "bad input",
        "what": "case one",
        "outcome": "saw 1",
        "result": "passed",
        "detail": "",
        "duration": 0,
        "error": None,
    }
    assert entries["test_one_marker[a|b]"]["what"] == "one marker for all cases [a|b]"
    assert entries["test_fails"]["result"] == "failed"
    assert entries["test_fails"]["outcome"] == "observed before failing"
    assert entries["test_fails"]["detail"] == "call: assert 1 == 2"
    assert (entries["test_skipped"]["result"], entries["test_skipped"]["detail"]) == ("skipped", "Skipped: not here")
    assert entries["test_skipped"]["error"] is None
    assert entries["test_forgot"]["result"] == "passed"
    assert entries["test_forgot"]["error"].startswith("passed without recording an outcome")
    assert report["rootdir"] == str(suite)


def test_a_passing_run_with_a_test_that_recorded_nothing_fails(suite: Path):
    ran = run_pytest(suite, suite / "forgot.json", "-k", "forgot or per_case")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "3 passed" in ran.stdout


def test_the_markdown_counts_the_rows_flags_the_gap_and_holds_nothing_of_the_machine(
    suite: Path, report: dict[str, Any]
):
    written = render(suite / "report.json", suite / "RELIABILITY.md")
    assert written.returncode == 1  # an entry is flagged
    assert "flagged: test_sample.py::test_forgot: passed without recording an outcome" in written.stderr
    text = (suite / "RELIABILITY.md").read_text()

    assert text.startswith("# Reliability\n")
    assert "Generated by `scripts/reliability_report.py`" in text
    assert "scripts/reliability_report.py build/reliability.json docs/RELIABILITY.md" in text
    assert "| bad input | 2 | 2 | 0 | 0 | 0 |" in text
    assert "| fault | 3 | 1 | 1 | 1 | 1 |" in text
    assert "| secret | 2 | 2 | 0 | 0 | 0 |" in text
    assert "| **all** | 7 | 5 | 1 | 1 | 1 |" in text
    assert "3 tried: 1 passed, 1 failed, 1 skipped; 1 flagged for recording no outcome." in text
    assert "| a skipped one | (skipped: `Skipped: not here`) | skipped |" in text
    assert (
        "| a fault whose outcome the test forgot | **nothing recorded** "
        "| passed, **flagged**: passed without recording an outcome" in text
    )
    assert "| a test that fails | `observed before failing` (failed: `call: assert 1 == 2`) | failed |" in text
    assert (
        "| one marker for all cases \\[a\\|b\\] | `saw a\\|b` | passed | `test_sample.py::test_one_marker[a\\|b]` |"
        in text
    )
    assert (
        "`invalid literal for int() with base 10: 'x' in <tmp>/spec.yaml via 127.0.0.1:<port> from <repo>/x.tf"
        " by <fingerprint>`" in text
    )
    for machine in ("pytest-of-", "43123", str(suite), 'duration":', "0123456789ABCDEF"):
        assert machine not in text


def test_the_markdown_is_the_same_from_a_run_under_xdist(suite: Path, report: dict[str, Any]):
    ran = run_pytest(suite, suite / "xdist.json", "-p", "xdist.plugin", "-n", "2")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    render(suite / "report.json", suite / "one.md")
    render(suite / "xdist.json", suite / "two.md")
    assert (suite / "two.md").read_text() == (suite / "one.md").read_text()
