"""What a run shows its user: stage progress at a terminal, log groups in GitHub Actions."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from pipeline.redact import redact

# Terraform lines worth showing without --verbose: what changed, and the verdict.
_TERRAFORM_HIGHLIGHTS = (
    "Creation complete",
    "Modifications complete",
    "Destruction complete",
    "Plan:",
    "Apply complete",
    "No changes.",
)


class Reporter:
    def __init__(
        self, stream: TextIO = sys.stderr, *, actions: bool = False, verbose: bool = False, color: bool = False
    ) -> None:
        self.stream = stream
        self.actions = actions
        self.verbose = verbose
        self.color = color

    def _write(self, text: str) -> None:
        self.stream.write(redact(text) + "\n")
        self.stream.flush()

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        if self.actions:
            self._write(f"::group::{name}")
        else:
            self._write(self._paint(f"==> {name}", "1"))
        try:
            yield
        except BaseException:
            self._write(self._paint(f"    {name} failed after {time.monotonic() - started:.1f}s", "31"))
            raise
        finally:
            if self.actions:
                self._write("::endgroup::")
        self._write(self._paint(f"    {name} done in {time.monotonic() - started:.1f}s", "32"))

    def info(self, text: str) -> None:
        self._write(f"    {text}")

    def tool_line(self, line: str) -> None:
        """A line of a tool's output (Terraform's): everything with --verbose, else the highlights."""
        if self.verbose or any(mark in line for mark in _TERRAFORM_HIGHLIGHTS):
            self._write(f"    | {line}")

    def error(self, message: str) -> None:
        if self.actions:
            self._write(f"::error::{message}")
        else:
            self._write(self._paint(f"error: {message}", "31"))
