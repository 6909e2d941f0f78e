"""docs/COMPLIANCE.md is what the code says, and every test it names exists."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "compliance_report.py"
DOC = ROOT / "docs" / "COMPLIANCE.md"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("compliance_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_document_is_the_one_the_code_writes(tmp_path: Path):
    written = tmp_path / "COMPLIANCE.md"
    subprocess.run([sys.executable, str(SCRIPT), str(written)], check=True)
    assert DOC.read_text(encoding="utf-8") == written.read_text(encoding="utf-8"), (
        "docs/COMPLIANCE.md is stale: python scripts/compliance_report.py docs/COMPLIANCE.md"
    )


def test_every_test_the_document_names_is_collected():
    report = _script()
    named = {test.format(id=rule.id) for rule in report.policy.RULES for test in report.TESTS[rule.checks]}
    named |= {test for *_, test in report.OUTSIDE_THE_RULES}
    files = sorted({test.split("::")[0] for test in named})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert named <= set(collected), sorted(named - set(collected))
