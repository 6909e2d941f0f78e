"""What every measure shares: a fresh local AWS endpoint, an isolated pipeline home, timed CLI runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import local_endpoint
from pipeline.config import load_settings
from pipeline.model import AwsAccess

REPO = Path(__file__).resolve().parent.parent
_STAGE_DONE = re.compile(r"^\s+(\w+) done in ([0-9.]+)s$")


@contextlib.contextmanager
def moto_server(root: Path) -> Iterator[str]:
    """A fresh local AWS endpoint of its own, started and stopped as `pipeline local up/down` do.

    Its CA is this process's AWS_CA_BUNDLE meanwhile, as a user pointing PIPELINE_AWS_ENDPOINT at it would set.
    """
    settings = load_settings({"PIPELINE_STATE_DIR": str(root)}, root)
    before = os.environ.get(AwsAccess.CA_BUNDLE)
    try:
        endpoint = local_endpoint.up(settings)
        os.environ[AwsAccess.CA_BUNDLE] = str(endpoint.ca_bundle)
        yield endpoint.url
    finally:
        local_endpoint.down(settings)
        if before is None:
            os.environ.pop(AwsAccess.CA_BUNDLE, None)
        else:
            os.environ[AwsAccess.CA_BUNDLE] = before


@dataclass(frozen=True)
class Home:
    """One pipeline user: state dir, fleet, git and gpg homes, and the endpoint it talks to."""

    root: Path
    endpoint: str
    plugin_cache: Path

    @property
    def env(self) -> dict[str, str]:
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "GIT_", "GNUPG"))},
            "HOME": str(home),
            "GNUPGHOME": str(home / ".gnupg"),
            "PIPELINE_TARGET": "local",
            "PIPELINE_AWS_ENDPOINT": self.endpoint,
            "PIPELINE_STATE_DIR": str(self.root / "state"),
            "PIPELINE_FLEET": str(self.root / "fleet.git"),
            "PIPELINE_PLUGIN_CACHE": str(self.plugin_cache),
            "PIPELINE_CRDS_DIR": os.environ.get("PIPELINE_CRDS_DIR", str(REPO.parent / "shared" / "crds")),
            "PYTHONPATH": str(REPO),
        }

    @property
    def fleet(self) -> Path:
        return self.root / "fleet.git"


@dataclass(frozen=True)
class Run:
    seconds: float
    stages: Mapping[str, float]  # as the reporter printed them: "NAME done in Xs"
    clones: int  # git clone processes the run started
    peak_rss_mb: float  # the pipeline process's own peak, not its children's
    stdout: str


def pipeline(home: Home, *args: str) -> Run:
    """`python -m pipeline ARGS` as a user runs it, timed; raises when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace2.json"
        peak = Path(tmp) / "peak"
        env = {**home.env, "GIT_TRACE2_EVENT": str(trace)}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bench.measured", str(peak), *args],
            cwd=home.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"pipeline {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        stages = {m.group(1): float(m.group(2)) for line in done.stderr.splitlines() if (m := _STAGE_DONE.match(line))}
        return Run(seconds, stages, _clones(trace), float(peak.read_text()) / 1024, done.stdout)


def _clones(trace: Path) -> int:
    """The `git clone` commands in a trace2 event log (each git process logs its command name once)."""
    if not trace.exists():
        return 0
    events = (json.loads(line) for line in trace.read_text().splitlines() if line.strip())
    return sum(1 for e in events if e.get("event") == "cmd_name" and e.get("name") == "clone")
