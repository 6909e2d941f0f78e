"""How a spec file meets the model: its YAML, the line of each field, and faults as one-line `SpecError`s.

The model (`spec`) is built from the pieces here: `SpecModel` (strict, camelCase, unknown fields
refused with "did you mean"), `Form` and `refuse` (faults in our own words) and `NullIs`. This is
the one place where pydantic's errors are put into our words: the field's dotted path, its line in
the file, the problem and the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from pipeline.errors import BadInput, SpecError


@dataclass(frozen=True)
class SpecSource:
    """The parsed YAML and where each field sits, so errors can point at the spec's line."""

    data: Mapping[str, Any]
    lines: Mapping[str, int]
    path: str

    @contextmanager
    def pointing(self) -> Iterator[None]:
        """Faults found past parsing (a taken CIDR, more zones than the region has) point at the spec's line too."""
        try:
            yield
        except SpecError as exc:
            if exc.line is not None:
                raise
            raise self.error(exc.field, exc.problem, exc.fix) from None

    def error(self, field: str, problem: str, fix: str) -> SpecError:
        return SpecError(field, problem, fix, self.line_of(field))

    def line_of(self, field: str) -> int | None:
        # A missing field points at its parent, the nearest line that exists.
        while field:
            if field in self.lines:
                return self.lines[field]
            field = field[: max(field.rfind("."), field.rfind("["), 0)]
        return None


_FROM_FILE = {"fields": "by alias"}
# What a YAML stream may carry (YAML 1.1, 5.1); kubectl kustomize refuses manifests holding anything else.
_NOT_YAML_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _yaml_printable(value: str) -> str:
    bad = _NOT_YAML_PRINTABLE.search(value)
    if bad is not None:
        raise refuse(f"holds the character U+{ord(bad.group()):04X}, which YAML cannot carry", "remove it")
    return value


YamlText = Annotated[str, Strict(), AfterValidator(_yaml_printable)]


def refuse(problem: str, fix: str, *at: str | int) -> PydanticCustomError:
    """A fault in our own words; `at` is the path below the field that the validator checks."""
    return PydanticCustomError("spec", "{problem}; {fix}", {"problem": problem, "fix": fix, "at": at})


class SpecModel(BaseModel):
    """A part of the spec: strict (no "3" for 3), frozen, camelCase in YAML and snake_case in Python."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        validate_by_name=True,  # code builds specs by attribute name; spec files are read by alias only
        use_attribute_docstrings=True,
        field_title_generator=lambda name, field: str(getattr(field, "validation_alias", None) or to_camel(name)),
    )

    @classmethod
    def read(cls, source: SpecSource, **defaults: object) -> Self:
        try:
            return cls.model_validate({**defaults, **source.data}, by_alias=True, by_name=False, context=_FROM_FILE)
        except ValidationError as exc:
            raise translate(exc, source) from None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any, info: ValidationInfo) -> Any:
        # A spec file's fields only: code that builds a spec names them by attribute, and pydantic checks those.
        if info.context == _FROM_FILE and isinstance(data, dict):
            known = [str(field.validation_alias or name) for name, field in cls.model_fields.items()]
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    raise refuse(
                        "unknown field",
                        f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(known)}",
                        str(key),
                    )
        return data


class Form:
    """A string (never a number made one) of one form, a regex anchored as JSON Schema has it, refused in our words."""

    def __init__(self, pattern: str, problem: str, fix: str, example: str, max_length: int | None = None) -> None:
        self.pattern, self.problem, self.fix, self.example = pattern, problem, fix, example
        self.max_length = max_length
        self._regex = re.compile(pattern)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        text = core_schema.str_schema(strict=True, max_length=self.max_length)
        return core_schema.no_info_after_validator_function(self._check, text)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {**handler(schema), "pattern": f"^(?:{self.pattern})$", "examples": [self.example]}

    def _check(self, value: str) -> str:
        if self._regex.fullmatch(value) is None:
            raise refuse(self.problem.format(value), self.fix)
        return value


class NullIs:
    """`key:` with nothing after it reads as `empty`: an empty section takes its defaults."""

    def __init__(self, empty: object) -> None:
        self.empty = empty

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(lambda v: self.empty if v is None else v, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"anyOf": [handler(schema), {"type": "null"}]}


def default_spec_yaml(name: str) -> str:
    """A small dev cluster: what a newcomer gets without writing a spec."""
    return f"""\
name: {name}
region: us-east-1
kubernetesVersion: v1.31.2
network:
  zones: 2
  natGateways: single
  endpoints: [kms, logs, s3, sts]
apiServer:
  allowedCIDRs: []        # the management cluster (fleet.yaml) reaches the API; add your own CIDRs here
bastion:
  enabled: true
  allowedCIDRs: []        # no SSH until you list your CIDRs here
  instanceType: t3.micro
controlPlane:
  replicas: 1
  instanceType: m6i.large
workers:
  - name: default
    replicas: 2
    instanceType: m6i.large
sshKeyName: ""
tags:
  environment: dev
"""


def load(name: str, path: Path | None) -> SpecSource:
    """The spec at `path`, or the default one for cluster `name`."""
    if path is None:
        return read(default_spec_yaml(name), "(default spec)")
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(f"--spec {path}: {exc.strerror}; give the path of a cluster spec YAML") from None
    return read(text, str(path))


def read(text: str, path: str) -> SpecSource:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError("(file)", f"{path} is not valid YAML", "fix the YAML syntax", line) from None
    except RecursionError:
        raise SpecError("(file)", f"{path} nests too deeply", "flatten the YAML") from None
    except (ValueError, LookupError, AttributeError, TypeError, OverflowError):
        # PyYAML's constructors raise these for a value their tag cannot hold: `!!int abc`,
        # `!!bool maybe`, a date like 2020-13-45, a number of more than 4300 digits.
        raise SpecError(
            "(file)", f"{path} holds a value YAML cannot load", "check explicit !!tags, dates and long numbers"
        ) from None
    if not isinstance(data, dict):
        raise SpecError("(file)", f"{path} must be a YAML mapping", "start from the example in the README")
    lines: dict[str, int] = {}
    if root is not None:
        _record_lines(root, "", lines, set())
    return SpecSource(data, lines, path)


def _record_lines(node: yaml.Node, prefix: str, lines: dict[str, int], seen: set[int]) -> None:
    # An alias is the node it names: walking it again would loop on `&a [*a]` and take
    # exponential time on nested aliases (a "billion laughs").
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            lines[path] = key.start_mark.line + 1
            _record_lines(value, path, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = f"{prefix}[{index}]"
            lines[path] = item.start_mark.line + 1
            _record_lines(item, path, lines, seen)


def translate(exc: ValidationError, source: SpecSource) -> SpecError:
    """The first fault in the file's order, in our words."""
    errors = [_in_our_words(error, source) for error in exc.errors(include_url=False)]
    return min(errors, key=lambda error: error.line if error.line is not None else len(source.lines) + 1)


def _in_our_words(error: ErrorDetails, source: SpecSource) -> SpecError:
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    loc = (*error["loc"], *ctx.get("at", ()))
    field = _dotted(loc)
    value, kind = error["input"], error["type"]
    key = next((str(part) for part in reversed(loc) if isinstance(part, str) and part != "[key]"), field)
    if kind == "spec":
        return source.error(field, ctx["problem"], ctx["fix"])
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", ctx["expected"])
        close = difflib.get_close_matches(str(value), allowed, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"use {ctx['expected'].replace(' or ', ', ')}"
        return source.error(field, f"{value!r} is not one of the values allowed here", fix)
    # A kind of fault not worded here still gets our words, never pydantic's.
    problem, fix = _GENERIC.get(kind, ("is not a value this field takes", "see its description in `spec schema`"))
    words = {"kind": _kind(value), "key": key, "value": value, "size": _size(value), **ctx}
    return source.error(field or "(file)", problem.format(**words), fix.format(**words))


_GENERIC = {
    "missing": ("is required", "add '{key}:' to the spec"),
    "int_type": ("must be a whole number, got {kind}", "write a number like 3"),
    "string_type": ("must be a string, got {kind}", "quote the value"),
    "bool_type": ("must be true or false, got {kind}", "write true or false"),
    "model_type": ("must be a mapping, got {kind}", "indent its fields under it"),
    "dict_type": ("must be a mapping, got {kind}", "write it as key: value lines under it"),
    "tuple_type": ("must be a list, got {kind}", "write it as {key}: [a, b], or as '- ' lines under it"),
    "greater_than_equal": ("{value} is less than {ge}", "use {ge} or more"),
    "less_than_equal": ("{value} is more than {le}", "use at most {le}"),
    "string_too_short": ("is empty", "give it a value"),
    "string_too_long": ("is {size} characters", "use at most {max_length}"),
    "too_long": ("has {size} entries", "use at most {max_length}"),
    "too_short": ("is empty", "list at least {min_length}, or leave it out"),
}


def _dotted(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _size(value: object) -> int | None:
    return len(value) if isinstance(value, str | dict | list | tuple) else None


def _kind(value: object) -> str:
    names: dict[type, str] = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }
    return names.get(type(value), type(value).__name__)
