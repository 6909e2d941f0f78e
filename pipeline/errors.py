"""The pipeline's failures, one type per kind; the CLI turns each into one line and an exit code.

Exit codes: 0 done (or nothing to do), 1 failed, 2 bad input, 3 blocked by a lock, a conflict or throttling,
4 `plan` found changes (not a failure: a script tells "would change" from "nothing to do"),
5 the plan about to be applied is not the one reviewed (`new-cluster --expect-plan`), 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BLOCKED = 3
EXIT_CHANGES = 4  # `plan` only: the run it describes would change something
EXIT_PLAN_DIFFERS = 5  # `new-cluster --expect-plan`: what it would apply is not what was reviewed
EXIT_INTERRUPTED = 130


class PipelineError(Exception):
    """Root of every failure the pipeline reports to its user."""

    exit_code = EXIT_FAILED


class BadInput(PipelineError):
    """The user's input (spec, flags, configuration) is wrong; nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class SpecError(BadInput):
    """One field of the cluster spec is invalid."""

    def __init__(self, field: str, problem: str, fix: str, line: int | None = None, file: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        self.line = line
        self.file = file  # named in the message when a command reads several spec files
        where = "" if file is None else f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(_printable(f"{where}spec field '{field}': {problem}; {fix}"))

    def in_file(self, file: str) -> SpecError:
        return SpecError(self.field, self.problem, self.fix, self.line, file)


def _printable(text: str) -> str:
    # Messages quote the user's values: a line break would split the one-line error, a control
    # character would reach the terminal. Both are shown escaped, as Python writes them.
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class UsageError(BadInput):
    """The command line does not parse (an unknown flag, a missing argument, a bad choice); argparse said which."""


class SchemasMissing(BadInput):
    """No CRD schemas are available to validate against."""


class SchemaChecksumMismatch(PipelineError):
    """A downloaded CRD does not match its pinned checksum; nothing was cached."""


class Blocked(PipelineError):
    """Another run, a lock or a conflicting change is in the way; retrying later may work."""

    exit_code = EXIT_BLOCKED


class StateLocked(Blocked):
    """Terraform's state is locked by another (or a dead) run."""


class OrphanedResources(Blocked):
    """AWS holds resources tagged for a cluster that its Terraform state does not track."""


class RunInProgress(Blocked):
    """Another pipeline run holds this cluster."""


class RecordChanged(Blocked):
    """An object in the state bucket changed since this run read it: another run wrote it."""


class PlanDiffers(PipelineError):
    """The plan a run is about to apply hashes differently from the reviewed one; nothing was applied."""

    exit_code = EXIT_PLAN_DIFFERS


class CommandFailed(PipelineError):
    """An external command exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:] if line.strip())
        super().__init__(f"{' '.join(self.argv[:2])} exited {returncode}: {tail}")


class TerraformError(PipelineError):
    """Terraform failed; carries the command and the lines that explain why."""


class AwsError(PipelineError):
    """An AWS API call failed or the account cannot host the cluster."""


class AwsUnavailable(AwsError):
    """The AWS endpoint could not be reached, timed out or kept failing (5xx) after bounded retries."""


class AwsThrottled(AwsError, Blocked):
    """AWS kept throttling a call after bounded retries; the rate frees up, so running again later works."""


class LocalEndpointError(PipelineError):
    """The embedded AWS endpoint (moto server) could not be started or reached."""


class ManifestInvalid(PipelineError):
    """A rendered manifest does not pass the CRD schemas or kustomize."""

    def __init__(self, findings: Sequence[str]) -> None:
        self.findings = tuple(findings)
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(f"manifest invalid: {findings[0]}{more}")


class FleetFileInvalid(BadInput):
    """A file of the fleet's own on main (fleet.yaml, policy-exceptions.yaml) is malformed; it names the field."""


class JournalInvalid(BadInput):
    """A run record, in the state dir or the state bucket, is not one this pipeline wrote; it names the field."""


class FleetRemoteOccupied(BadInput):
    """The fleet remote holds something other than a fleet; nothing was pushed to it."""


class SigningError(PipelineError):
    """A commit could not be signed, or its signature is not from a trusted key."""


class GitError(PipelineError):
    """The fleet repository could not be read, updated or pushed."""


class GitConflict(GitError, Blocked):
    """The fleet moved while a run worked, or a review branch conflicts with main."""


class PushRejected(GitConflict):
    """The remote refused a push because the branch moved since it was read; reading it again may succeed."""


class Interrupted(PipelineError):
    """The user interrupted the run; whatever was in flight was let finish safely."""

    exit_code = EXIT_INTERRUPTED


class GitHubError(PipelineError):
    """A GitHub API call failed; the message quotes GitHub's own explanation."""


class GitHubAuthError(GitHubError):
    """GitHub rejected the token itself (401)."""


class GitHubNotFound(GitHubError):
    """GitHub answered 404: the resource is missing or the token cannot see it."""


class GitHubForbidden(GitHubError):
    """GitHub refused the call (403) for lack of permission, not for a rate limit."""


class GitHubRejected(GitHubError):
    """GitHub refused a request as invalid (422 and other client errors)."""


class GitHubReviewerInvalid(GitHubError, BadInput):
    """A requested reviewer cannot review the pull request (its author, or not a collaborator)."""


class GitHubUnavailable(GitHubError):
    """GitHub could not be reached, or kept failing (5xx) after bounded retries."""


class GitHubRateLimited(GitHubError, Blocked):
    """GitHub's rate limit is exhausted for longer than the pipeline will wait."""
