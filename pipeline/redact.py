"""Secrets never reach a log line, an error message or a file: everything printed passes here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_MASK = "***"
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "PIPELINE_GPG_PASSPHRASE")
_secrets: set[str] = set()


def register(values: Iterable[str]) -> None:
    """Remember values that must be masked wherever they would appear."""
    # Short values would mask ordinary words; real secrets are long.
    _secrets.update(v for v in values if len(v) >= 6)


def register_env(env: Mapping[str, str]) -> None:
    register(env[name] for name in _SECRET_ENV if name in env)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text
