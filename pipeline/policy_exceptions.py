"""Exceptions to the policy rules: only what `policy-exceptions.yaml` on main says, a reviewed and signed change.

    exceptions:
      - rule: api.ingress-limited
        cluster: web
        reason: the partner's load tests reach it from addresses that change daily
        expires: 2027-03-31

An exception without a reason or an expiry is refused; an expired one excepts nothing and is a
finding of `verify` until it is renewed or removed.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline import policy
from pipeline.errors import FleetFileInvalid

FILE = "policy-exceptions.yaml"


@dataclass(frozen=True)
class PolicyException:
    rule: str
    cluster: str
    reason: str
    expires: datetime.date
    index: int

    def where(self) -> str:
        return f"{FILE} exceptions[{self.index}] ({self.rule} for {self.cluster})"


@dataclass(frozen=True)
class Judged:
    """Findings no exception covers, and the ones excepted with the exception that covers each."""

    findings: tuple[policy.Finding, ...]
    excepted: tuple[tuple[policy.Finding, PolicyException], ...]


def parse(text: str | None) -> tuple[PolicyException, ...]:
    """The file's exceptions; none when there is no file. A malformed one raises FleetFileInvalid, naming it."""
    if text is None:
        return ()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise FleetFileInvalid(f"{FILE} is not YAML: {' '.join(str(err).split())}") from None
    if data is not None and not isinstance(data, Mapping):
        raise FleetFileInvalid(f"{FILE}: is not a mapping; give exceptions: [{{rule, cluster, reason, expires}}]")
    entries = (data or {}).get("exceptions") or []
    if not isinstance(entries, list):
        raise FleetFileInvalid(f"{FILE}: exceptions must be a list of {{rule, cluster, reason, expires}}")
    return tuple(_entry(index, entry) for index, entry in enumerate(entries))


def _entry(index: int, entry: Any) -> PolicyException:
    where = f"{FILE} exceptions[{index}]"
    if not isinstance(entry, Mapping):
        raise FleetFileInvalid(f"{where}: is not a mapping; give rule, cluster, reason and expires")
    unknown = sorted(set(entry) - {"rule", "cluster", "reason", "expires"})
    if unknown:
        raise FleetFileInvalid(f"{where}.{unknown[0]}: unknown field; an exception has rule, cluster, reason, expires")
    rule = entry.get("rule")
    if rule not in policy.BY_ID:
        raise FleetFileInvalid(f"{where}.rule: {rule!r} is not a rule; `verify --explain` lists them")
    for field in ("cluster", "reason"):
        value = entry.get(field)
        if not isinstance(value, str) or not value.strip():
            fix = "say why the rule does not apply" if field == "reason" else "name the cluster it is for"
            raise FleetFileInvalid(f"{where}.{field}: missing; {fix}")
    expires = entry.get("expires")
    if not isinstance(expires, datetime.date) or isinstance(expires, datetime.datetime):
        raise FleetFileInvalid(f"{where}.expires: missing or not a date; give the day it ends, as YYYY-MM-DD")
    return PolicyException(rule, entry["cluster"], entry["reason"].strip(), expires, index)


def expired(exceptions: Iterable[PolicyException], today: datetime.date) -> list[PolicyException]:
    return [e for e in exceptions if e.expires < today]


def expiry_finding(exception: PolicyException) -> str:
    return (
        f"{exception.where()}: expired on {exception.expires.isoformat()}; renew it with a later expiry, or remove it"
    )


def judge(findings: Sequence[policy.Finding], exceptions: Iterable[PolicyException], today: datetime.date) -> Judged:
    """Findings that no exception in force covers, and those it does."""
    live = {(e.rule, e.cluster): e for e in exceptions if e.expires >= today}
    left, excepted = [], []
    for finding in findings:
        exception = live.get((finding.rule.id, finding.cluster))
        if exception is None:
            left.append(finding)
        else:
            excepted.append((finding, exception))
    return Judged(tuple(left), tuple(excepted))


def today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()
