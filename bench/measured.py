"""`python -m bench.measured PEAK_FILE ARGS...`: the pipeline's CLI; then its own peak RSS, in KiB, into PEAK_FILE."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from pipeline.cli import main


def run() -> int:
    peak_file, *args = sys.argv[1:]
    try:
        return main(args)
    finally:
        Path(peak_file).write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


if __name__ == "__main__":
    sys.exit(run())
