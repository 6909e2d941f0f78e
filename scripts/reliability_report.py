"""Write docs/RELIABILITY.md from the JSON a test run wrote with ``--reliability-report`` (tests/reliability.py).

usage: python scripts/reliability_report.py build/reliability.json docs/RELIABILITY.md

Every row and every count in the markdown comes from that JSON, that is from the tests that ran:
the marker's description of what was tried, the line the test recorded as its outcome, and the
test's result. Nothing that changes between runs or machines reaches the markdown (durations, temporary
paths, the checkout's path, loopback ports), so an unchanged suite regenerates the same file. Exits 1, after writing,
if an entry is flagged (a marked test that passed without recording what it observed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KINDS = ("bad input", "fault", "secret")
HEADINGS = {"bad input": "Bad inputs", "fault": "Faults", "secret": "Secrets"}
RESULTS = ("passed", "failed", "skipped")

REGENERATE = """\
.venv/bin/pytest -n auto --reliability-report=build/reliability.json
.venv/bin/python scripts/reliability_report.py build/reliability.json docs/RELIABILITY.md"""

_PATH_PART = r"(?:/[\w.@+-]+)*?"
MACHINE_SPECIFIC = (
    # pytest's tmp_path: /tmp/pytest-of-USER/pytest-N/[popen-gwK/]TEST0
    (re.compile(_PATH_PART + r"/pytest-of-[\w.@+-]+/pytest-(?:\d+|current)(?:/popen-gw\d+)?/[\w.@+-]+"), "<tmp>"),
    # tempfile.mkdtemp() and friends: /tmp/tmpXXXXXXXX
    (re.compile(_PATH_PART + r"/tmp[a-z0-9_]{8}\b"), "<tmp>"),  # noqa: S108 - a pattern, not a file
    # servers on a free loopback port
    (re.compile(r"\b(127\.0\.0\.1|localhost):\d+\b"), r"\1:<port>"),
    # how long something took
    (re.compile(r"\b(after|in|took) \d+(?:\.\d+)?m?s\b"), r"\1 <duration>"),
    # OpenPGP fingerprints of the keys each test generates
    (re.compile(r"\b[0-9A-F]{40}\b"), "<fingerprint>"),
)


@dataclass(frozen=True)
class Entry:
    nodeid: str
    kind: str
    what: str
    outcome: str
    result: str
    detail: str
    error: str | None


def load(path: Path) -> list[Entry]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError(f"{path}: expected an object with a list 'entries' (written by pytest --reliability-report)")
    root = data.get("rootdir")
    at_root = re.compile(re.escape(root) + r"(?![\w.-])") if isinstance(root, str) and len(root) > 1 else None

    def here(text: str) -> str:
        """The text with the checkout the tests ran in shown as <repo>."""
        return at_root.sub("<repo>", text) if at_root else text

    entries = []
    for row in data["entries"]:
        if not isinstance(row, dict):
            raise ValueError(f"{path}: an entry is not an object: {row!r}")
        text = {key: row.get(key) for key in ("nodeid", "kind", "what", "outcome", "result", "detail")}
        if not all(isinstance(value, str) for value in text.values()) or text["result"] not in RESULTS:
            raise ValueError(f"{path}: malformed entry: {row!r}")
        error = row.get("error")
        entries.append(
            Entry(
                nodeid=str(text["nodeid"]),
                kind=str(text["kind"]),
                what=here(str(text["what"])),
                outcome=here(str(text["outcome"])),
                result=str(text["result"]),
                detail=here(str(text["detail"])),
                error=str(error) if error else None,
            )
        )
    return sorted(entries, key=lambda e: (e.kind, e.nodeid))


def stable(text: str) -> str:
    """The text without what differs between machines and runs, on one line."""
    for pattern, replacement in MACHINE_SPECIFIC:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def plain(text: str) -> str:
    """Text for a table cell, with markdown's special characters escaped."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", stable(text))


def code(text: str) -> str:
    """Text for a table cell as a code span (a pipe still needs its backslash inside a table)."""
    text = stable(text).replace("|", "\\|")
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def observed(entry: Entry) -> str:
    if entry.error:
        return "**nothing recorded**"
    parts = [code(entry.outcome)] if entry.outcome.strip() else []
    if entry.result != "passed" and entry.detail:
        parts.append(f"({entry.result}: {code(entry.detail)})")
    return " ".join(parts) or "—"


def result(entry: Entry) -> str:
    return f"{entry.result}, **flagged**: {plain(entry.error)}" if entry.error else entry.result


def counts(entries: Sequence[Entry]) -> dict[str, int]:
    return {
        "tried": len(entries),
        **{name: sum(e.result == name for e in entries) for name in RESULTS},
        "flagged": sum(bool(e.error) for e in entries),
    }


def totals_line(entries: Sequence[Entry]) -> str:
    n = counts(entries)
    line = f"{n['tried']} tried: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped"
    return line + (f"; {n['flagged']} flagged for recording no outcome." if n["flagged"] else ".")


def render(entries: Sequence[Entry]) -> str:
    kinds = list(KINDS) + sorted({e.kind for e in entries} - set(KINDS))
    by_kind = {kind: [e for e in entries if e.kind == kind] for kind in kinds}
    lines = [
        "# Reliability",
        "",
        "<!-- Generated by scripts/reliability_report.py from the test run. Do not edit by hand. -->",
        "",
        "Generated by `scripts/reliability_report.py` from the JSON the test run writes with",
        "`--reliability-report` (the plugin in `tests/reliability.py`). Each row is one test marked",
        "`@pytest.mark.reliability(kind, what)` that ran: *what was tried* is the marker's description,",
        '*outcome observed* is the line that test recorded with `record_property("outcome", ...)` while',
        "it ran, *result* is the test's result, and every count is counted from the rows. Temporary",
        "paths are shown as `<tmp>`, the checkout the tests ran in as `<repo>`, loopback ports as",
        "`<port>`, durations as `<duration>` and the fingerprints of keys the tests generate as `<fingerprint>`.",
        "",
        "Regenerate (`make test` does both):",
        "",
        "```sh",
        REGENERATE,
        "```",
        "",
        "| kind | tried | passed | failed | skipped | flagged |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        n = counts(by_kind[kind])
        lines.append(f"| {kind} | " + " | ".join(str(n[k]) for k in ("tried", *RESULTS, "flagged")) + " |")
    lines.append("| **all** | " + " | ".join(str(counts(entries)[k]) for k in ("tried", *RESULTS, "flagged")) + " |")
    for kind in kinds:
        rows = by_kind[kind]
        lines += ["", f"## {HEADINGS.get(kind, kind.capitalize())}", "", totals_line(rows), ""]
        if not rows:
            lines.append("No test of this kind ran.")
            continue
        lines += ["| what was tried | outcome observed | result | test |", "|---|---|---|---|"]
        lines += [f"| {plain(e.what)} | {observed(e)} | {result(e)} | {code(e.nodeid)} |" for e in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("json", type=Path, help="the file pytest --reliability-report wrote")
    parser.add_argument("markdown", type=Path, help="the markdown to write, e.g. docs/RELIABILITY.md")
    args = parser.parse_args(argv)
    try:
        entries = load(args.json)
    except (OSError, ValueError) as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 2
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(render(entries))
    flagged = [e for e in entries if e.error]
    print(f"wrote {args.markdown}: {totals_line(entries)}")
    for entry in flagged:
        print(f"flagged: {entry.nodeid}: {entry.error}", file=sys.stderr)
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
