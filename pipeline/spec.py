"""The cluster spec: YAML in, a validated `ClusterSpec` out, or a `SpecError` naming the field and the fix."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import BadInput, SpecError
from pipeline.model import (
    BastionSpec,
    ClusterSpec,
    ControlPlaneSpec,
    NatMode,
    NetworkSpec,
    WorkerPool,
)

# The API server load balancer is named "<cluster>-apiserver"; AWS caps load balancer names at 32.
MAX_NAME_LENGTH = 32 - len("-apiserver")
SUPPORTED_MINORS = range(30, 35)  # Kubernetes 1.30 .. 1.34, the range the pinned Cluster API supports
KNOWN_ENDPOINTS = (
    "autoscaling",
    "ec2",
    "ec2messages",
    "ecr.api",
    "ecr.dkr",
    "elasticloadbalancing",
    "kms",
    "logs",
    "s3",
    "secretsmanager",
    "ssm",
    "ssmmessages",
    "sts",
)
# Terraform adds its own tags (Name, kubernetes.io/...) to each resource; AWS allows 50 in all.
MAX_USER_TAGS = 40
FLEET_POOL = ipaddress.IPv4Network("10.0.0.0/8")
DEFAULT_PREFIX = 16

# `\Z`, not `$`: `$` also matches before a final newline, so "us-east-1\n" would pass.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# Terraform names the cluster's AWS resources after it: a letter first, at least two characters.
_CLUSTER_NAME = re.compile(r"^[a-z][-a-z0-9]*[a-z0-9]\Z")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d\Z")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.(nano|micro|small|medium|large|metal|\d*xlarge)(-\d+xl)?\Z")
_INT32_MAX = 2**31 - 1  # replicas are int32 in the Cluster API types
_KEY_NAME_MAX = 255  # EC2 key pair names: ASCII, 255 at most
_K8S_VERSION = re.compile(r"^v1\.(\d+)\.(\d+)\Z")
# What a YAML stream may carry (YAML 1.1, 5.1); kubectl kustomize refuses manifests holding anything else.
_NOT_YAML_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_FIELDS: dict[str, tuple[str, ...]] = {
    "": (
        "name",
        "region",
        "kubernetesVersion",
        "network",
        "bastion",
        "controlPlane",
        "workers",
        "sshKeyName",
        "tags",
    ),
    "network": ("cidr", "zones", "natGateways", "endpoints"),
    "bastion": ("enabled", "allowedCIDRs", "instanceType", "allowOpenSSH"),
    "controlPlane": ("replicas", "instanceType"),
    "workers[]": ("name", "replicas", "instanceType"),
}


@dataclass(frozen=True)
class SpecSource:
    """The parsed YAML and where each field sits, so errors can point at the spec's line."""

    data: Mapping[str, Any]
    lines: Mapping[str, int]
    path: str


def default_spec_yaml(name: str) -> str:
    """A small dev cluster: what a newcomer gets without writing a spec."""
    return f"""\
name: {name}
region: us-east-1
kubernetesVersion: v1.31.2
network:
  zones: 2
  natGateways: single
  endpoints: [s3, sts]
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


def parse(
    source: SpecSource,
    cli_name: str,
    taken_cidrs: Sequence[str] = (),
    current_cidr: str | None = None,
    zones_available: int | None = None,
) -> ClusterSpec:
    """Validate every field; allocate the VPC CIDR from the fleet pool when the spec has none.

    `current_cidr` is the CIDR the cluster already has, so a re-run without one keeps it.
    """
    return _Parser(source).cluster(cli_name, taken_cidrs, current_cidr, zones_available)


class _Parser:
    def __init__(self, source: SpecSource) -> None:
        self.source = source

    def fail(self, field: str, problem: str, fix: str) -> SpecError:
        line = self.source.lines.get(field)
        if line is None:
            # A missing field: point at its parent, the nearest line that exists.
            parent = field.rpartition(".")[0]
            line = self.source.lines.get(parent)
        return SpecError(field, problem, fix, line)

    def known(self, data: Mapping[str, Any], schema: str, prefix: str) -> None:
        allowed = _FIELDS[schema]
        for key in data:
            if key not in allowed:
                field = f"{prefix}.{key}" if prefix else str(key)
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(allowed)}"
                raise self.fail(field, "unknown field", hint)

    def mapping(self, data: Mapping[str, Any], key: str, field: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a mapping, got {_kind(value)}", "indent its fields under it")
        return value

    def string(self, data: Mapping[str, Any], key: str, field: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if value is None:
            raise self.fail(field, "is required", f"add '{key}:' to the spec")
        if not isinstance(value, str):
            raise self.fail(field, f"must be a string, got {_kind(value)}", "quote the value")
        return value

    def integer(self, data: Mapping[str, Any], key: str, field: str, default: int | None = None) -> int:
        value = data.get(key, default)
        if value is None:
            raise self.fail(field, "is required", f"add '{key}:' to the spec")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be a whole number, got {_kind(value)}", "write a number like 3")
        if value > _INT32_MAX:
            raise self.fail(field, f"{value} is more than Cluster API's fields hold", f"use at most {_INT32_MAX}")
        return value

    def strings(self, data: Mapping[str, Any], key: str, field: str, default: Sequence[str]) -> list[str]:
        value = data.get(key, list(default))
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(field, "must be a list of strings", f"write it as {key}: [a, b]")
        return list(value)

    def cluster(
        self,
        cli_name: str,
        taken_cidrs: Sequence[str],
        current_cidr: str | None,
        zones_available: int | None,
    ) -> ClusterSpec:
        data = self.source.data
        self.known(data, "", "")
        name = self.string(data, "name", "name", default=cli_name)
        problem = _cluster_name_problem(name)
        if problem is not None:
            raise self.fail("name", problem, _CLUSTER_NAME_FIX)
        if name != cli_name:
            raise self.fail(
                "name",
                f"'{name}' differs from the cluster named on the command line ('{cli_name}')",
                "make them the same",
            )
        region = self.string(data, "region", "region", default="us-east-1")
        if not _REGION.match(region):
            raise self.fail("region", f"'{region}' is not an AWS region", "use a region such as us-east-1")
        return ClusterSpec(
            name=name,
            region=region,
            kubernetes_version=self.kubernetes_version(data),
            network=self.network(data, taken_cidrs, current_cidr, zones_available),
            bastion=self.bastion(data),
            control_plane=self.control_plane(data),
            workers=self.workers(data),
            ssh_key_name=self.key_name(data),
            tags=self.tags(data),
        )

    def printable(self, value: str, field: str) -> str:
        bad = _NOT_YAML_PRINTABLE.search(value)
        if bad is not None:
            code = f"U+{ord(bad.group()):04X}"
            raise self.fail(field, f"holds the character {code}, which YAML cannot carry", "remove it")
        return value

    def dns_label(self, value: str, field: str, limit: int) -> None:
        if not _DNS_LABEL.match(value):
            raise self.fail(
                field,
                f"'{value}' is not a DNS-1123 label",
                "use lowercase letters, digits and '-', starting and ending with a letter or digit",
            )
        if len(value) > limit:
            raise self.fail(field, f"'{value}' is {len(value)} characters", f"use at most {limit}")

    def kubernetes_version(self, data: Mapping[str, Any]) -> str:
        version = self.string(data, "kubernetesVersion", "kubernetesVersion", default="v1.31.2")
        match = _K8S_VERSION.match(version)
        supported = f"v1.{SUPPORTED_MINORS.start}.x to v1.{SUPPORTED_MINORS.stop - 1}.x"
        if match is None:
            raise self.fail("kubernetesVersion", f"'{version}' is not of the form vX.Y.Z", f"use {supported}")
        if int(match.group(1)) not in SUPPORTED_MINORS:
            raise self.fail("kubernetesVersion", f"{version} is not supported", f"use {supported}")
        return version

    def network(
        self,
        data: Mapping[str, Any],
        taken_cidrs: Sequence[str],
        current_cidr: str | None,
        zones_available: int | None,
    ) -> NetworkSpec:
        net = self.mapping(data, "network", "network")
        self.known(net, "network", "network")
        zones = self.integer(net, "zones", "network.zones", default=2)
        limit = zones_available if zones_available is not None else 6
        if not 1 <= zones <= limit:
            raise self.fail("network.zones", f"{zones} zones asked", f"use 1 to {limit} (what the region has)")
        nat = self.string(net, "natGateways", "network.natGateways", default="single")
        modes: dict[str, NatMode] = {"single": "single", "per-zone": "per-zone"}
        if nat not in modes:
            raise self.fail("network.natGateways", f"'{nat}' is not a NAT mode", "use 'single' or 'per-zone'")
        endpoints = self.strings(net, "endpoints", "network.endpoints", default=("s3", "sts"))
        for index, endpoint in enumerate(endpoints):
            if endpoint not in KNOWN_ENDPOINTS:
                close = difflib.get_close_matches(endpoint, KNOWN_ENDPOINTS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(KNOWN_ENDPOINTS)}"
                raise self.fail(f"network.endpoints[{index}]", f"'{endpoint}' is not a known endpoint", hint)
        if len(set(endpoints)) != len(endpoints):
            raise self.fail("network.endpoints", "lists an endpoint twice", "list each endpoint once")
        cidr = self.cidr(net, taken_cidrs, current_cidr)
        return NetworkSpec(cidr=cidr, zones=zones, nat_gateways=modes[nat], endpoints=tuple(sorted(endpoints)))

    def cidr(self, net: Mapping[str, Any], taken_cidrs: Sequence[str], current_cidr: str | None) -> str:
        taken = [ipaddress.ip_network(c) for c in taken_cidrs]
        if "cidr" not in net or net["cidr"] is None:
            if current_cidr is not None:
                return current_cidr
            return str(allocate(taken))
        text = self.string(net, "cidr", "network.cidr")
        try:
            network = ipaddress.ip_network(text)
        except ValueError:
            raise self.fail("network.cidr", f"'{text}' is not a CIDR block", "write it as 10.20.0.0/16") from None
        # A /24 still holds six zones' public and private subnets at /28, AWS's smallest.
        if not isinstance(network, ipaddress.IPv4Network) or not 16 <= network.prefixlen <= 24:
            raise self.fail("network.cidr", f"{text} is not an IPv4 /16 to /24", "use a /16 to /24 block")
        for other in taken:
            if network.overlaps(other):
                raise self.fail(
                    "network.cidr",
                    f"{text} overlaps {other}, used by another cluster in the fleet",
                    f"choose a free block such as {allocate(taken)} or omit cidr to allocate one",
                )
        return str(network)

    def bastion(self, data: Mapping[str, Any]) -> BastionSpec:
        bastion = self.mapping(data, "bastion", "bastion")
        self.known(bastion, "bastion", "bastion")
        enabled = bastion.get("enabled", True)
        if not isinstance(enabled, bool):
            raise self.fail("bastion.enabled", f"must be true or false, got {_kind(enabled)}", "write true")
        allow_open = bastion.get("allowOpenSSH", False)
        if not isinstance(allow_open, bool):
            raise self.fail("bastion.allowOpenSSH", f"must be true or false, got {_kind(allow_open)}", "write false")
        cidrs = self.strings(bastion, "allowedCIDRs", "bastion.allowedCIDRs", default=())
        canonical: set[str] = set()
        for index, text in enumerate(cidrs):
            field = f"bastion.allowedCIDRs[{index}]"
            try:
                network = ipaddress.ip_network(text)
            except ValueError:
                raise self.fail(field, f"'{text}' is not a CIDR block", "write it as 203.0.113.0/24") from None
            # By prefix, not spelling: 0.0.0.0/0.0.0.0 and 0::/0 open SSH as much as 0.0.0.0/0 does.
            if network.prefixlen == 0 and not allow_open:
                raise self.fail(
                    field,
                    f"{text} opens SSH to the whole internet",
                    "list your own CIDRs, or set bastion.allowOpenSSH: true to accept that",
                )
            if network.version == 6:
                raise self.fail(field, f"{text} is IPv6; the bastion is reached over IPv4", "list IPv4 CIDRs")
            canonical.add(str(network))
        whole = ipaddress.IPv4Network("0.0.0.0/0")
        if not allow_open and whole in ipaddress.collapse_addresses(ipaddress.IPv4Network(c) for c in canonical):
            raise self.fail(
                "bastion.allowedCIDRs",
                "together these blocks open SSH to the whole internet",
                "list your own CIDRs, or set bastion.allowOpenSSH: true to accept that",
            )
        instance_type = self.instance_type(bastion, "bastion.instanceType", "t3.micro")
        return BastionSpec(enabled=enabled, allowed_cidrs=tuple(sorted(canonical)), instance_type=instance_type)

    def key_name(self, data: Mapping[str, Any]) -> str:
        name = self.printable(self.string(data, "sshKeyName", "sshKeyName", default=""), "sshKeyName")
        if not name.isascii() or len(name) > _KEY_NAME_MAX:
            raise self.fail(
                "sshKeyName",
                "is not an EC2 key pair name",
                f"use the name of a key pair: {_KEY_NAME_MAX} ASCII at most",
            )
        return name

    def instance_type(self, data: Mapping[str, Any], field: str, default: str | None = None) -> str:
        value = self.string(data, "instanceType", field, default=default)
        if not _INSTANCE_TYPE.match(value):
            raise self.fail(field, f"'{value}' is not an EC2 instance type", "use the AWS form, e.g. m6i.large")
        return value

    def control_plane(self, data: Mapping[str, Any]) -> ControlPlaneSpec:
        cp = self.mapping(data, "controlPlane", "controlPlane")
        self.known(cp, "controlPlane", "controlPlane")
        replicas = self.integer(cp, "replicas", "controlPlane.replicas", default=1)
        if replicas < 1 or replicas % 2 == 0:
            raise self.fail(
                "controlPlane.replicas",
                f"{replicas} control plane machines cannot keep etcd quorum",
                "use an odd number: 1, 3 or 5",
            )
        return ControlPlaneSpec(replicas, self.instance_type(cp, "controlPlane.instanceType", "m6i.large"))

    def workers(self, data: Mapping[str, Any]) -> tuple[WorkerPool, ...]:
        pools = data.get("workers", [{"name": "default", "replicas": 2}])
        if not isinstance(pools, list):
            raise self.fail("workers", f"must be a list, got {_kind(pools)}", "write each pool as '- name: ...'")
        result: list[WorkerPool] = []
        for index, pool in enumerate(pools):
            prefix = f"workers[{index}]"
            if not isinstance(pool, dict):
                raise self.fail(prefix, "must be a mapping", "give it name, replicas and instanceType")
            self.known(pool, "workers[]", prefix)
            name = self.string(pool, "name", f"{prefix}.name")
            self.dns_label(name, f"{prefix}.name", 20)
            replicas = self.integer(pool, "replicas", f"{prefix}.replicas", default=1)
            if replicas < 0:
                raise self.fail(f"{prefix}.replicas", f"{replicas} is negative", "use 0 or more")
            result.append(WorkerPool(name, replicas, self.instance_type(pool, f"{prefix}.instanceType", "m6i.large")))
        names = [p.name for p in result]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise self.fail("workers", f"two pools are named '{duplicate}'", "give each pool its own name")
        return tuple(result)

    def tags(self, data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        tags = self.mapping(data, "tags", "tags")
        if len(tags) > MAX_USER_TAGS:
            raise self.fail("tags", f"{len(tags)} tags", f"use at most {MAX_USER_TAGS}")
        result: list[tuple[str, str]] = []
        for key, value in tags.items():
            field = f"tags.{key}"
            if not isinstance(key, str) or not 1 <= len(key) <= 128:
                raise self.fail(field, "tag keys must be 1 to 128 characters", "shorten the key")
            if key.lower().startswith(("aws:", "kubernetes.io/", "sigs.k8s.io/")):
                raise self.fail(field, f"the prefix of '{key}' is reserved", "use your own prefix")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise self.fail(field, f"must be a string, got {_kind(value)}", "quote the value")
            text = str(value)
            if len(text) > 256:
                raise self.fail(field, "tag values must be at most 256 characters", "shorten the value")
            result.append((self.printable(key, field), self.printable(text, field)))
        return tuple(sorted(result))


_CLUSTER_NAME_FIX = (
    "use 2 or more lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
)


def check_name(name: str) -> None:
    """A cluster name the command line gives, before it becomes a path, a branch or a lock."""
    problem = _cluster_name_problem(name)
    if problem is not None:
        raise SpecError("name", problem, _CLUSTER_NAME_FIX)


def _cluster_name_problem(name: str) -> str | None:
    if not _CLUSTER_NAME.match(name):
        return f"'{name}' is not a DNS-1123 label starting with a letter"
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"'{name}' is {len(name)} characters, more than the {MAX_NAME_LENGTH} that AWS's load balancer names allow"
        )
    return None


def allocate(taken: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> ipaddress.IPv4Network:
    """The first /16 of the fleet pool that overlaps no cluster's block, from 10.20.0.0 up."""
    blocks = list(FLEET_POOL.subnets(new_prefix=DEFAULT_PREFIX))
    ordered = blocks[20:] + blocks[:20]
    used = list(taken)
    for block in ordered:
        if not any(block.overlaps(other) for other in used):
            return block
    raise SpecError("network.cidr", "the fleet pool 10.0.0.0/8 is full", "set network.cidr explicitly")


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
