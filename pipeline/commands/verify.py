"""`verify`: what Flux would check on a fleet branch; the fleet repository's PR check."""

from __future__ import annotations

from pipeline import policy, schemas
from pipeline.config import Settings
from pipeline.errors import EXIT_FAILED, EXIT_OK
from pipeline.report import Outcome, Reporter, markdown_list
from pipeline.verify import Verification, verify_fleet


def run(ref: str, settings: Settings, reporter: Reporter, *, everything: bool = False, explain: bool = False) -> int:
    """One finding per line and their count (exit 1), or one line saying what was verified.

    `explain`: the policy's rules, one per line (id, NIST SP 800-53 control, what it checks and why), and nothing else.
    """
    if explain:
        rules = policy.explain()
        reporter.finish(Outcome(tuple(rules), {"rules": rules}))
        return EXIT_OK
    result = verify_fleet(settings, schemas.load(settings), ref, everything=everything)
    reporter.finish(_finished(result))
    return EXIT_FAILED if result.findings else EXIT_OK


def _finished(result: Verification) -> Outcome:
    unchecked = [f"not checkable offline (the API server judges it): {rule}" for rule in result.unchecked]
    if result.findings:
        verdict = _count(len(result.findings), "finding")
        lines = (*result.findings, *unchecked, verdict)
        summary = markdown_list(f"Verify `{result.ref}`: {verdict}", result.findings)
    else:
        verdict = (
            f"fleet verified: {result.ref} at {result.commit} signed by {result.signer}, "
            f"{_count(len(result.clusters), 'cluster')}"
        )
        lines = (*unchecked, verdict)
        summary = markdown_list(f"Verify `{result.ref}`: verified", [verdict])
    data = {
        "ref": result.ref,
        "commit": result.commit,
        "signer": result.signer,
        "clusters": list(result.clusters),
        "findings": list(result.findings),
        "unchecked": list(result.unchecked),
        "verified": not result.findings,
    }
    return Outcome(lines, data, summary=summary)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
