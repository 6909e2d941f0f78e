"""The one way the pipeline runs an external command: pinned environment, redacted output."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pipeline.errors import CommandFailed, Interrupted
from pipeline.redact import redact

# Set for every child: no prompts, no colour, no pager, stable locale.
_PINNED_ENV = {
    "TF_IN_AUTOMATION": "1",
    "TF_INPUT": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "NO_COLOR": "1",
    "LC_ALL": "C.UTF-8",
}


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_PINNED_ENV)
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> Result:
    """Run argv to completion; `env` adds to (and overrides) the pinned environment.

    With `on_line`, stdout is passed line by line (redacted) as it arrives.
    A Ctrl-C reaches the child through the shared process group; we wait for
    it to finish its own graceful shutdown rather than killing it, so tools
    such as terraform can save state before exiting.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=child_env(env),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    out_lines: list[str] = []
    err_chunks: list[str] = []
    err_reader = threading.Thread(target=lambda: err_chunks.append(_read_all(proc.stderr)))
    err_reader.start()
    interrupted = False
    try:
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        assert proc.stdout is not None
        for line in proc.stdout:
            out_lines.append(line)
            if on_line is not None:
                on_line(redact(line.rstrip("\n")))
        proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        proc.wait()
    finally:
        err_reader.join()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    result = Result(proc.returncode, redact("".join(out_lines)), redact("".join(err_chunks)))
    if interrupted:
        raise Interrupted(f"interrupted while running {argv[0]}; it was allowed to stop cleanly")
    if check and result.returncode != 0:
        raise CommandFailed([redact(a) for a in argv], result.returncode, result.stderr or result.stdout)
    return result


def _read_all(stream: object) -> str:
    read = getattr(stream, "read", None)
    return str(read()) if read is not None else ""
