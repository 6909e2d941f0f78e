from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from pipeline import allocation, spec, spec_source
from pipeline.errors import EXIT_BAD_INPUT, SpecError

GOOD = """\
name: demo
region: us-east-1
kubernetesVersion: v1.31.2
network:
  cidr: 10.20.0.0/16
  zones: 3
  natGateways: single
  endpoints: [s3, sts, ecr.api, ecr.dkr]
bastion:
  enabled: true
  allowedCIDRs: [203.0.113.0/24]
  instanceType: t3.micro
controlPlane:
  replicas: 3
  instanceType: m6i.large
workers:
  - name: default
    replicas: 3
    instanceType: m6i.large
sshKeyName: ops
tags: {team: platform}
"""


def parse(text: str, name: str = "demo", taken: tuple[str, ...] = (), current: str | None = None):
    source = spec_source.read(text, "spec.yaml")
    with source.pointing():
        return allocation.place(spec.parse(source, name), allocation.Known(frozenset(taken), current))


def with_change(path: str, value: Any) -> str:
    data = yaml.safe_load(GOOD)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


DELETE = object()


def test_the_design_example_parses_to_typed_values():
    cluster = parse(GOOD)
    assert cluster.name == "demo"
    assert cluster.network.cidr == "10.20.0.0/16"
    assert cluster.network.endpoints == ("ecr.api", "ecr.dkr", "s3", "sts")
    assert cluster.control_plane.replicas == 3
    assert cluster.workers[0].name == "default"
    assert cluster.tags == {"team": "platform"}


def test_the_default_spec_is_valid_and_gets_a_free_cidr():
    cluster = parse(spec_source.default_spec_yaml("dev"), "dev", taken=("10.20.0.0/16", "10.21.0.0/16"))
    assert cluster.network.cidr == "10.22.0.0/16"
    assert cluster.bastion.allowed_cidrs == ()


def test_a_cluster_keeps_its_cidr_on_a_rerun():
    cluster = parse(spec_source.default_spec_yaml("dev"), "dev", taken=(), current="10.99.0.0/16")
    assert cluster.network.cidr == "10.99.0.0/16"


def test_same_spec_same_fingerprint_and_a_change_changes_it():
    assert parse(GOOD).fingerprint() == parse(GOOD).fingerprint()
    assert parse(GOOD).fingerprint() != parse(with_change("workers.0.replicas", 4)).fingerprint()


BAD: list[tuple[str, str, Any, str]] = [
    # (id, path, new value, field named in the error)
    ("name-uppercase", "name", "Demo", "name"),
    ("name-underscore", "name", "de_mo", "name"),
    ("name-leading-dash", "name", "-demo", "name"),
    ("name-too-long", "name", "a" * 23, "name"),
    ("name-one-character", "name", "a", "name"),
    ("bastion-cidr-ipv6", "bastion.allowedCIDRs", ["2001:db8::/32"], "bastion.allowedCIDRs[0]"),
    ("bastion-cidrs-cover-everything", "bastion.allowedCIDRs", ["0.0.0.0/1", "128.0.0.0/1"], "bastion.allowedCIDRs"),
    ("ssh-key-name-not-ascii", "sshKeyName", "clé", "sshKeyName"),
    ("worker-replicas-beyond-int32", "workers.0.replicas", 2**31, "workers[0].replicas"),
    ("name-leading-digit", "name", "1demo", "name"),
    ("name-path-escape", "name", "../evil", "name"),
    ("name-differs-from-cli", "name", "other", "name"),
    ("name-not-string", "name", 12, "name"),
    ("region-bad", "region", "mars-1", "region"),
    ("version-no-v", "kubernetesVersion", "1.31.2", "kubernetesVersion"),
    ("version-too-old", "kubernetesVersion", "v1.20.0", "kubernetesVersion"),
    ("version-too-new", "kubernetesVersion", "v1.40.0", "kubernetesVersion"),
    ("cidr-syntax", "network.cidr", "10.20.0.0/33", "network.cidr"),
    ("cidr-not-cidr", "network.cidr", "banana", "network.cidr"),
    ("cidr-too-big", "network.cidr", "10.0.0.0/8", "network.cidr"),
    ("cidr-too-small", "network.cidr", "10.20.0.0/26", "network.cidr"),
    ("cidr-ipv6", "network.cidr", "fd00::/48", "network.cidr"),
    ("cidr-host-bits", "network.cidr", "10.20.0.1/16", "network.cidr"),
    ("zones-zero", "network.zones", 0, "network.zones"),
    ("zones-too-many", "network.zones", 9, "network.zones"),
    ("zones-string", "network.zones", "three", "network.zones"),
    ("zones-bool", "network.zones", True, "network.zones"),
    ("nat-unknown", "network.natGateways", "double", "network.natGateways"),
    ("endpoint-unknown", "network.endpoints", ["s3", "dynamo"], "network.endpoints[1]"),
    ("endpoint-twice", "network.endpoints", ["s3", "s3"], "network.endpoints"),
    ("endpoints-not-list", "network.endpoints", "s3", "network.endpoints"),
    ("network-not-mapping", "network", [1, 2], "network"),
    ("bastion-open-v4", "bastion.allowedCIDRs", ["0.0.0.0/0"], "bastion.allowedCIDRs[0]"),
    ("bastion-open-v6", "bastion.allowedCIDRs", ["::/0"], "bastion.allowedCIDRs[0]"),
    ("bastion-bad-cidr", "bastion.allowedCIDRs", ["203.0.113.0/99"], "bastion.allowedCIDRs[0]"),
    ("bastion-enabled-string", "bastion.enabled", "yes please", "bastion.enabled"),
    ("bastion-instance-type", "bastion.instanceType", "tiny", "bastion.instanceType"),
    ("cp-even", "controlPlane.replicas", 2, "controlPlane.replicas"),
    ("cp-zero", "controlPlane.replicas", 0, "controlPlane.replicas"),
    ("cp-instance-type", "controlPlane.instanceType", "M6I.LARGE", "controlPlane.instanceType"),
    ("worker-negative", "workers.0.replicas", -1, "workers[0].replicas"),
    ("worker-bad-name", "workers.0.name", "Default Pool", "workers[0].name"),
    ("worker-instance-type", "workers.0.instanceType", "m6i", "workers[0].instanceType"),
    ("workers-not-list", "workers", {"name": "x"}, "workers"),
    ("tag-reserved", "tags", {"aws:created": "x"}, "tags.aws:created"),
    ("tag-key-too-long", "tags", {"k" * 129: "x"}, "tags." + "k" * 129),
    ("tag-value-too-long", "tags", {"team": "v" * 257}, "tags.team"),
    ("tag-value-mapping", "tags", {"team": {"a": 1}}, "tags.team"),
    ("unknown-top", "clusterName", "x", "clusterName"),
    ("pool-zone-not-a-zone", "workers.0.zones", ["us-east-1a", "east"], "workers[0].zones[1]"),
    ("pool-zone-twice", "workers.0.zones", ["us-east-1a", "us-east-1a"], "workers[0].zones"),
    ("pool-zones-empty", "workers.0.zones", [], "workers[0].zones"),
    ("pool-replicas-and-autoscaling", "workers.0.autoscaling", {"minSize": 1, "maxSize": 3}, "workers[0].replicas"),
    (
        "autoscaling-max-below-min",
        "workers.0.autoscaling",
        {"minSize": 4, "maxSize": 2},
        "workers[0].autoscaling.maxSize",
    ),
    ("autoscaling-no-max", "workers.0.autoscaling", {"minSize": 1}, "workers[0].autoscaling.maxSize"),
    ("addon-unknown", "addons", {"calico": {}}, "addons.calico"),
    ("addon-version-not-pinned", "addons", {"cilium": {"version": "latest"}}, "addons.cilium.version"),
    ("addon-extra-without-source", "addons", {"extra": [{"name": "x"}]}, "addons.extra[0]"),
    (
        "addon-extra-chart-and-path",
        "addons",
        {
            "extra": [
                {
                    "name": "x",
                    "path": "./a",
                    "chart": {"repository": "https://c.example", "name": "x", "version": "1.0.0"},
                }
            ]
        },
        "addons.extra[0]",
    ),
    (
        "addon-role-unknown",
        "addons",
        {"extra": [{"name": "x", "path": "./a", "provides": "dns"}]},
        "addons.extra[0].provides",
    ),
    ("health-check-too-short", "healthChecks", {"unhealthySeconds": 5}, "healthChecks.unhealthySeconds"),
    ("unknown-nested", "network.cidrs", "10.0.0.0/16", "network.cidrs"),
    (
        "addon-verify-not-oci",
        "addons",
        {
            "extra": [
                {
                    "name": "x",
                    "chart": {"repository": "https://c.example", "name": "x", "version": "1.0.0", "verify": {}},
                }
            ]
        },
        "addons.extra[0].chart.verify",
    ),
    ("image-neither", "image", {}, "image"),
    (
        "image-ami-and-lookup",
        "image",
        {"ami": {"us-east-1": "ami-0123456789abcdef0"}, "lookup": {"org": "258751437250"}},
        "image",
    ),
    ("image-ami-not-an-id", "image", {"ami": {"us-east-1": "ubuntu-24.04"}}, "image.ami.us-east-1"),
    ("image-ami-other-region", "image", {"ami": {"eu-west-1": "ami-0123456789abcdef0"}}, "image.ami"),
    ("image-ami-region-not-a-region", "image", {"ami": {"moon-1": "ami-0123456789abcdef0"}}, "image.ami.moon-1"),
    ("image-lookup-org-not-an-account", "image", {"lookup": {"org": "capa"}}, "image.lookup.org"),
    ("image-lookup-without-org", "image", {"lookup": {"baseOS": "ubuntu-24.04"}}, "image.lookup.org"),
    ("api-open", "apiServer", {"allowedCIDRs": ["0.0.0.0/0"]}, "apiServer.allowedCIDRs[0]"),
    ("api-open-together", "apiServer", {"allowedCIDRs": ["0.0.0.0/1", "128.0.0.0/1"]}, "apiServer.allowedCIDRs"),
    ("bastion-ssm-with-cidrs", "bastion", {"mode": "ssm", "allowedCIDRs": ["203.0.113.0/24"]}, "bastion.allowedCIDRs"),
    ("retention-not-cloudwatch", "network", {"flowLogRetentionDays": 100}, "network.flowLogRetentionDays"),
    ("pod-security-privileged", "podSecurity", {"enforce": "privileged"}, "podSecurity.enforce"),
]


def shown(value: Any) -> str:
    """A bad value as the report shows it: a long run of one character as its count."""
    return re.sub(r"(.)\1{7,}", lambda run: f"{run[1]}×{len(run[0])}", repr(value))  # noqa: RUF001


def bad_case(case_id: str, path: str, value: Any, field: str) -> Any:
    what = f"spec {path} = {shown(value)}" if value is not DELETE else f"spec without {path}"
    return pytest.param(path, value, field, id=case_id, marks=pytest.mark.reliability("bad input", what))


@pytest.mark.parametrize(("path", "value", "field"), [bad_case(*c) for c in BAD])
def test_bad_input_names_the_field_and_the_fix(path: str, value: Any, field: str, record_property):
    with pytest.raises(SpecError) as caught:
        parse(with_change(path, value))
    error = caught.value
    record_property("outcome", f"{type(error).__name__} (exit {error.exit_code}): {error}")
    assert error.field == field
    assert error.exit_code == EXIT_BAD_INPUT
    assert error.fix
    assert "\n" not in str(error)


@pytest.mark.reliability("bad input", "spec with a misspelt field: network.natGateway")
def test_unknown_field_suggests_the_near_one(record_property):
    with pytest.raises(SpecError, match="did you mean 'natGateways'") as caught:
        parse(GOOD.replace("natGateways:", "natGateway:"))
    record_property("outcome", f"SpecError (exit {caught.value.exit_code}): {caught.value}")


@pytest.mark.reliability("bad input", "spec network.cidr 10.20.0.0/16 overlapping another cluster's 10.20.128.0/17")
def test_overlap_with_another_cluster_is_refused_with_a_free_block(record_property):
    with pytest.raises(SpecError, match=r"overlaps 10\.20\.128\.0/17.*such as 10\.21\.0\.0/16") as caught:
        parse(GOOD, taken=("10.20.128.0/17",))
    record_property("outcome", f"SpecError (exit {caught.value.exit_code}): {caught.value}")


def test_open_ssh_needs_an_explicit_opt_in():
    text = with_change("bastion.allowedCIDRs", ["0.0.0.0/0"])
    data = yaml.safe_load(text)
    data["bastion"]["allowOpenSSH"] = True
    assert parse(yaml.safe_dump(data)).bastion.allowed_cidrs == ("0.0.0.0/0",)


@pytest.mark.reliability("bad input", "spec controlPlane.replicas = 4 (even), to be located by its line")
def test_errors_point_at_the_spec_line(record_property):
    with pytest.raises(SpecError) as caught:
        parse(GOOD.replace("replicas: 3\n  instanceType: m6i.large", "replicas: 4\n  instanceType: m6i.large"))
    record_property("outcome", f"SpecError on line {caught.value.line}: {caught.value}")
    assert caught.value.field == "controlPlane.replicas"
    assert caught.value.line == 14


@pytest.mark.reliability("bad input", "spec that is not YAML: an unclosed flow sequence")
def test_broken_yaml_is_bad_input_with_its_line(record_property):
    with pytest.raises(SpecError) as caught:
        spec_source.read("name: demo\nnetwork: [\n", "spec.yaml")
    record_property("outcome", f"SpecError on line {caught.value.line}: {caught.value}")
    assert caught.value.line is not None


@pytest.mark.reliability("bad input", "spec tag values holding YAML (a: b, kind: Secret) and Jinja ({{ 7*7 }})")
def test_values_that_look_like_yaml_stay_strings(record_property):
    cluster = parse(with_change("tags", {"team": "a: b\nkind: Secret", "note": "{{ 7*7 }}"}))
    record_property("outcome", f"parsed tags: {dict(cluster.tags)!r}")
    assert cluster.tags == {"team": "a: b\nkind: Secret", "note": "{{ 7*7 }}"}
