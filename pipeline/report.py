"""What a run shows its user: stage progress at a terminal, log groups in GitHub Actions, and how it ended.

Progress goes to `stream` (stderr); how a command ended goes to `out` (stdout), as lines for a
person or, with --json, as one JSON object for a program.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from pipeline import actions
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


@dataclass(frozen=True)
class Outcome:
    """How a command ended, said three ways: to a person, to a program, to the Actions job."""

    lines: tuple[str, ...]  # what was done and what to do next
    data: Mapping[str, object]  # the one JSON object of --json
    summary: str = ""  # Markdown for the job summary; empty: none
    outputs: Mapping[str, str] = field(default_factory=dict)  # step outputs


class Reporter:
    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        out: TextIO | None = None,
        runner: actions.Runner | None = None,
        verbose: bool = False,
        color: bool = False,
        as_json: bool = False,
    ) -> None:
        """`runner`: the runner's files when in GitHub Actions, else None; streams left None: stderr and stdout."""
        self._stream = stream
        self._out = out
        self.runner = runner
        self.verbose = verbose
        self.color = color
        self.as_json = as_json

    # Looked up when written, not when made: a caller (or a test) may have swapped stderr or stdout since.
    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    def _write(self, text: str, stream: TextIO | None = None) -> None:
        target = stream or self.stream
        target.write(redact(text) + "\n")
        target.flush()

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        if self.runner is not None:
            self._write(actions.command("group", name))
        else:
            self._write(self._paint(f"==> {name}", "1"))
        try:
            yield
        except BaseException:
            self._write(self._paint(f"    {name} failed after {time.monotonic() - started:.1f}s", "31"))
            raise
        finally:
            if self.runner is not None:
                self._write(actions.command("endgroup"))
        self._write(self._paint(f"    {name} done in {time.monotonic() - started:.1f}s", "32"))

    def info(self, text: str) -> None:
        self._write(f"    {text}")

    def tool_line(self, line: str) -> None:
        """A line of a tool's output (Terraform's): everything with --verbose, else the highlights."""
        if self.verbose or any(mark in line for mark in _TERRAFORM_HIGHLIGHTS):
            self._write(f"    | {line}")

    def error(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        """One line; in Actions an annotation, on `file` at `line` when the failure has a place."""
        if self.runner is None:
            self._write(self._paint(f"error: {message}", "31"))
        elif file is not None and line is not None:
            self._write(actions.command("error", message, file=file, line=str(line)))
        else:
            self._write(actions.command("error", message))

    def finish(self, outcome: Outcome) -> None:
        """How the command ended: on stdout, lines or the JSON object; in Actions, the summary and outputs too."""
        if self.as_json:
            # The lines still reach a person watching, beside the progress.
            for text in outcome.lines:
                self._write(text)
            self._json(outcome.data)
        else:
            for text in outcome.lines:
                self._write(text, self.out)
        if self.runner is not None:
            self.runner.add_summary(outcome.summary)
            self.runner.set_outputs(outcome.outputs)

    def failed(self, message: str, exit_code: int, *, file: str | None = None, line: int | None = None) -> None:
        """A failure: the one-line error, and with --json also `{"error", "exit_code"}` on stdout."""
        self.error(message, file=file, line=line)
        if self.as_json:
            self._json({"error": message, "exit_code": exit_code})

    def _json(self, data: Mapping[str, object]) -> None:
        # Redacted value by value: a secret escaped inside a JSON string would slip past redacting the text.
        self.out.write(json.dumps(_redacted(data), indent=2, sort_keys=True) + "\n")
        self.out.flush()


def markdown_list(title: str, lines: Sequence[str]) -> str:
    """A job summary that says what the lines say: a heading and one bullet each."""
    return "\n".join([f"### {title}", "", *(f"- {line}" for line in lines)]) + "\n"


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value
