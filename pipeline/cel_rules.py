"""The CRDs' CEL rules (`x-kubernetes-validations`), evaluated on an object as the API server would on create.

A rule that cannot be judged offline is named, never passed: a transition rule (it reads
`oldSelf`, which only an update has), or one calling a function that only Kubernetes' CEL
library defines (`isURL`, `quantity`, `ip`, ...).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cel

Schema = Mapping[str, Any]
# What the CEL runtime says of a name outside the standard library: a Kubernetes extension, here.
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']+)'")


@dataclass(frozen=True)
class Outcome:
    failures: tuple[tuple[str, str], ...]  # (path in the object, the rule's message)
    unevaluated: tuple[tuple[str, str, str], ...]  # (path, rule, why it was not judged)


def evaluate(body: Mapping[str, Any], schema: Schema) -> Outcome:
    failures: list[tuple[str, str]] = []
    unevaluated: list[tuple[str, str, str]] = []
    for path, node, rules in _ruled(body, schema, ""):
        for rule in rules:
            text = str(rule.get("rule", ""))
            verdict = _judge(text, node)
            if isinstance(verdict, str):
                unevaluated.append((path or ".", text, verdict))
            elif not verdict:
                failures.append((path or ".", str(rule.get("message") or f"failed rule: {text}")))
    return Outcome(tuple(failures), tuple(unevaluated))


def _ruled(value: Any, schema: Schema, path: str) -> Iterator[tuple[str, Any, list[Mapping[str, Any]]]]:
    """Each present value whose schema carries rules: a rule applies only where its field is set."""
    rules = schema.get("x-kubernetes-validations")
    if rules:
        yield path, value, list(rules)
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            sub = properties.get(key) or (extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                yield from _ruled(child, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _ruled(item, schema["items"], f"{path}[{index}]")


def _judge(rule: str, value: Any) -> bool | str:
    """True or False, or why the rule cannot be judged here."""
    if "oldSelf" in rule:
        return "a transition rule: it compares with the stored object, which only an update has"
    program = _program(rule)
    if isinstance(program, str):
        return program
    try:
        result = program.execute({"self": value})
    except (RuntimeError, KeyError, TypeError, ValueError) as failed:
        return _why(failed)
    return result if isinstance(result, bool) else f"evaluates to {type(result).__name__}"


@functools.lru_cache(maxsize=1024)
def _program(rule: str) -> cel.Program | str:
    try:
        return cel.compile(rule)
    except ValueError as failed:
        return f"does not parse here: {_first_line(failed)}"


def _why(failed: Exception) -> str:
    undefined = _UNDEFINED.search(str(failed))
    if undefined is not None:
        return f"uses {undefined.group(1)}, which only Kubernetes' CEL library defines"
    return f"cannot be evaluated offline: {_first_line(failed)[:120]}"


def _first_line(failed: Exception) -> str:
    return (str(failed).splitlines() or [type(failed).__name__])[0]
