"""pytest plugin: what the reliability-marked tests tried and what they observed, as JSON for docs/RELIABILITY.md.

A test that exercises a bad input, an injected fault or a secret is marked
``@pytest.mark.reliability(kind, what)`` and calls ``record_property("outcome", line)`` with the
line it observed. With ``--reliability-report=PATH`` the controlling process (the only one under
pytest-xdist) collects one entry per marked test from the reports and writes PATH at the end;
``scripts/reliability_report.py`` turns that file into the markdown.

The marker's arguments do not travel from xdist workers to the controller, so the process that
runs the test copies them into the item's ``user_properties``, which do travel.

A marked test that passes without recording an outcome would be a row with nothing observed in
it: its entry carries an ``error`` and the run fails (exit 1), naming it in the summary.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

KINDS = ("bad input", "fault", "secret")
KIND_PROPERTY = "reliability_kind"
WHAT_PROPERTY = "reliability_what"
OUTCOME_PROPERTY = "outcome"
NO_OUTCOME = "passed without recording an outcome: call record_property('outcome', <the line the test observed>)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="write the reliability-marked tests' inputs, faults and observed outcomes to PATH as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(kind, what): a bad input, fault or secret case reported in docs/RELIABILITY.md"
    )
    path = config.getoption("--reliability-report")
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Collector(Path(path), config.rootpath), "reliability-collector")


def _marker_args(item: pytest.Item) -> tuple[str, str] | None:
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return None
    args = {**dict(zip(("kind", "what"), marker.args, strict=False)), **marker.kwargs}
    kind, what = args.get("kind"), args.get("what")
    if kind not in KINDS or not isinstance(what, str) or not what.strip() or "\n" in what:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.reliability takes (kind, what): kind one of {', '.join(KINDS)}, "
            f"what a one-line description; got {marker.args!r} {marker.kwargs!r}"
        )
    callspec = getattr(item, "callspec", None)
    if callspec is not None and marker not in callspec.marks:
        what = f"{what} [{callspec.id}]"  # one marker for every case: the case is its parameter id
    return str(kind), what.strip()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    try:
        _marker_args(item)
    except pytest.UsageError as bad:
        pytest.fail(str(bad), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Copy the marker's arguments into the properties every report of this test carries."""
    if any(name == KIND_PROPERTY for name, _ in item.user_properties):
        return
    try:
        found = _marker_args(item)
    except pytest.UsageError:
        return  # reported as the test's setup error
    if found is not None:
        item.user_properties[:0] = [(KIND_PROPERTY, found[0]), (WHAT_PROPERTY, found[1])]


@dataclass
class Entry:
    nodeid: str
    kind: str
    what: str
    outcome: str = ""  # what the test recorded with record_property("outcome", ...), in order, joined by "; "
    result: str = "passed"  # passed, failed or skipped
    detail: str = ""  # for a test that did not pass: the failure's or the skip's one line
    duration: float = 0.0
    error: str | None = None  # set when the entry cannot stand in the report as it is
    phases: dict[str, str] = field(default_factory=dict, repr=False)


def _one_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _detail(report: pytest.TestReport) -> str:
    longrepr: Any = report.longrepr
    if report.skipped:
        if isinstance(longrepr, (tuple, list)) and len(longrepr) == 3:
            return _one_line(str(longrepr[2]))
        wasxfail = getattr(report, "wasxfail", "")
        return f"xfail: {wasxfail}" if wasxfail else _one_line(str(longrepr))
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    return f"{report.when}: {_one_line(str(message if message is not None else longrepr))}"


class Collector:
    """Runs where the reports arrive (the xdist controller, or the one process) and writes the JSON."""

    def __init__(self, path: Path, rootdir: Path) -> None:
        self.path = path
        self.rootdir = rootdir
        self.entries: dict[str, Entry] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = [(str(name), value) for name, value in report.user_properties]
        kind = next((str(v) for n, v in properties if n == KIND_PROPERTY), None)
        if kind is None:
            return
        what = next(str(v) for n, v in properties if n == WHAT_PROPERTY)
        entry = self.entries.setdefault(report.nodeid, Entry(report.nodeid, kind, what))
        # Each report carries every property recorded so far; the last one has them all.
        entry.outcome = "; ".join(str(v) for n, v in properties if n == OUTCOME_PROPERTY)
        entry.duration += report.duration
        entry.phases[report.when] = report.outcome
        if not report.passed and not entry.detail:
            entry.detail = _detail(report)

    def finish(self) -> list[Entry]:
        done = sorted(self.entries.values(), key=lambda e: (e.kind, e.nodeid))
        for entry in done:
            outcomes = entry.phases.values()
            entry.result = "failed" if "failed" in outcomes else "skipped" if "skipped" in outcomes else "passed"
            entry.duration = round(entry.duration, 3)
            if entry.result == "passed" and not entry.outcome.strip():
                entry.error = NO_OUTCOME
        return done

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        entries = self.finish()
        rows = [{k: v for k, v in asdict(e).items() if k != "phases"} for e in entries]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps({"rootdir": str(self.rootdir), "entries": rows}, indent=2, ensure_ascii=False) + "\n"
        )
        if any(e.error for e in entries) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        entries = sorted(self.entries.values(), key=lambda e: (e.kind, e.nodeid))
        terminalreporter.write_sep("-", f"reliability report: {len(entries)} marked tests -> {self.path}")
        for entry in entries:
            if entry.error:
                terminalreporter.write_line(f"ERROR {entry.nodeid}: {entry.error}", red=True)
