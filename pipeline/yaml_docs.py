"""YAML read through libyaml: every manifest, spec and CRD is parsed here, at C speed."""

from __future__ import annotations

from typing import Any

import yaml

Error = yaml.YAMLError


def documents(text: str | bytes) -> list[Any]:
    """Every document of a YAML stream, empty ones as None; raises Error when it does not parse."""
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def document(text: str | bytes) -> Any:
    """The one document of a YAML text; raises Error when it does not parse."""
    return yaml.load(text, Loader=yaml.CSafeLoader)
