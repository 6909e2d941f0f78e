"""Talking to the GitHub Actions runner: workflow commands in the log, the job summary and step outputs files.

Everything passes `redact` first: the runner shows the log and the summary to anyone who can
read the workflow run, and outputs flow on into other jobs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.redact import redact

# A name the runner reads back unambiguously: no `=`, `<<` or line break.
_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def escape_data(value: str) -> str:
    """A command's message: a line break in it would end the command and let the next line be another."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """A command's property value: `:` and `,` would end it early, as they separate the properties."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str) -> str:
    """One workflow command line, e.g. `::error file=demo.yaml,line=4::the problem`."""
    # Redacted before escaping: an escaped secret would no longer match what redact looks for.
    listed = ",".join(f"{key}={escape_property(redact(value))}" for key, value in properties.items())
    return f"::{name}{' ' + listed if listed else ''}::{escape_data(redact(message))}"


def output_entry(name: str, value: str) -> str:
    """One output as the runner parses $GITHUB_OUTPUT: `name=value`, or a heredoc when the value spans lines."""
    if not _OUTPUT_NAME.fullmatch(name):
        raise ValueError(f"output name {name!r} is not a plain identifier")
    value = redact(value)
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    # The runner reads up to the first line equal to the delimiter: it must not be a line of the value.
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


@dataclass(frozen=True)
class Runner:
    """The files the runner reads back after the step; None where the runner named none."""

    summary_file: Path | None = None
    output_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Runner:
        summary, output = env.get("GITHUB_STEP_SUMMARY"), env.get("GITHUB_OUTPUT")
        return cls(Path(summary) if summary else None, Path(output) if output else None)

    def add_summary(self, markdown: str) -> None:
        """Append to the job summary; earlier steps' summaries in the same file stay."""
        if self.summary_file is not None and markdown:
            _append(self.summary_file, redact(markdown).rstrip("\n") + "\n\n")

    def set_outputs(self, outputs: Mapping[str, str]) -> None:
        if self.output_file is not None and outputs:
            _append(self.output_file, "".join(output_entry(name, value) for name, value in outputs.items()))


def _append(path: Path, text: str) -> None:
    # No newline translation: the runner's parser expects the lines exactly as written here.
    with path.open("a", encoding="utf-8", newline="\n") as file:
        file.write(text)
