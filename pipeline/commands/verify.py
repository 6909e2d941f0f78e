"""`verify`: what Flux would check on a fleet branch; the fleet repository's PR check."""

from __future__ import annotations

from pipeline import policy, schemas
from pipeline.config import Settings
from pipeline.errors import EXIT_FAILED, EXIT_OK
from pipeline.verify import verify_fleet


def run(ref: str, settings: Settings, *, everything: bool = False, explain: bool = False) -> int:
    """One finding per line and their count (exit 1), or one line saying what was verified.

    `explain`: the policy's rules, one per line (id, NIST SP 800-53 control, what it checks and why), and nothing else.
    """
    if explain:
        for line in policy.explain():
            print(line)
        return EXIT_OK
    result = verify_fleet(settings, schemas.load(settings), ref, everything=everything)
    for finding in result.findings:
        print(finding)
    for rule in result.unchecked:
        print(f"not checkable offline (the API server judges it): {rule}")
    if result.findings:
        print(_count(len(result.findings), "finding"))
        return EXIT_FAILED
    print(
        f"fleet verified: {ref} at {result.commit} signed by {result.signer}, {_count(len(result.clusters), 'cluster')}"
    )
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
