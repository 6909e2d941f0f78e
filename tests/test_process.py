from __future__ import annotations

import pytest

from pipeline import process, redact
from pipeline.errors import CommandFailed


def test_output_is_streamed_line_by_line_and_returned():
    seen: list[str] = []
    result = process.run(["sh", "-c", "echo one; echo two; echo err >&2"], on_line=seen.append)
    assert seen == ["one", "two"]
    assert result == process.Result(0, "one\ntwo\n", "err\n")


def test_children_get_the_pinned_environment():
    result = process.run(["sh", "-c", 'echo "$TF_IN_AUTOMATION $GIT_TERMINAL_PROMPT $EXTRA"'], env={"EXTRA": "x"})
    assert result.stdout == "1 0 x\n"


def test_a_failure_names_the_command_exit_code_and_last_lines():
    with pytest.raises(CommandFailed) as caught:
        process.run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 3"])
    assert caught.value.returncode == 3
    assert str(caught.value) == "sh -c exited 3: first | the reason"


def test_registered_secrets_never_reach_output_or_errors():
    redact.register(["s3cr3t-value-123"])
    seen: list[str] = []
    with pytest.raises(CommandFailed) as caught:
        process.run(["sh", "-c", "echo token=s3cr3t-value-123; echo s3cr3t-value-123 >&2; exit 1"], on_line=seen.append)
    assert seen == ["token=***"]
    assert "s3cr3t-value-123" not in str(caught.value) + caught.value.output


def test_secrets_from_the_environment_are_registered():
    redact.register_env({"GITHUB_TOKEN": "ghp_abcdefghijklmnop", "HOME": "/root"})
    assert redact.redact("Authorization: token ghp_abcdefghijklmnop in /root") == "Authorization: token *** in /root"
