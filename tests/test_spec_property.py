"""Property: any spec document either renders schema-valid manifests or is refused as bad input (exit 2).

The documents mix valid and plausible-invalid values for every field of the spec format, plus
YAML that PyYAML itself struggles with (explicit tags, recursive aliases, deep nesting, huge
numbers). A document is built from sections, each valid or deliberately broken, so the test also
knows which field a refusal has to name, and that a document with nothing broken must render.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from pipeline import allocation, render, spec, spec_source, validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import EXIT_BAD_INPUT, SpecError
from pipeline.model import Bastion, NetworkOutputs, Subnet
from pipeline.spec import ClusterSpec
from tests.fixtures_render import MANAGEMENT_CIDRS, SECRETS_KEY_ARN, schemas_from

TEMPLATES = PROJECT_ROOT / "templates"
MAX_EXAMPLES = 80
FILE = "(file)"

Strategy = st.SearchStrategy[Any]


class _Omit:
    """A key left out of the document: the parser's default applies."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT = _Omit()


@dataclass(frozen=True)
class Raw:
    """YAML text spliced in verbatim, for inputs yaml.safe_dump cannot produce."""

    text: str


@dataclass(frozen=True)
class Case:
    """One generated spec document and what the test knows about it."""

    cli_name: str
    text: str
    # Top-level fields that were broken on purpose; a refusal must name one of them (or the file).
    broken: frozenset[str] = field(default_factory=frozenset)
    open_ssh_opted_in: bool = False


# --- values the spec accepts -------------------------------------------------------------------

CLUSTER_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
POOL_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?", fullmatch=True)
REGIONS = st.sampled_from(["us-east-1", "eu-west-2", "ap-southeast-1", "us-gov-west-1", "cn-north-1", "me-central-1"])
VERSIONS = st.builds("v1.{}.{}".format, st.integers(30, 34), st.integers(0, 20))
INSTANCE_TYPES = st.sampled_from(
    ["t3.micro", "t4g.nano", "m6i.large", "c6i.xlarge", "m7g.2xlarge", "r6id.metal", "u-6tb1.metal", "c7gn.medium"]
)


@st.composite
def vpc_cidrs(draw: st.DrawFn) -> str:
    prefix = draw(st.integers(16, 24))
    address = draw(st.integers(0, 2**32 - 1))
    network = ipaddress.IPv4Network((address, prefix), strict=False)
    # The spec also reads the netmask form; what reaches the manifests is the canonical one.
    return draw(st.sampled_from([str(network), network.with_netmask]))


@st.composite
def ssh_cidrs(draw: st.DrawFn) -> str:
    # From /2 up: three blocks of a /2 or narrower can never cover the whole internet between them.
    return str(ipaddress.IPv4Network((draw(st.integers(0, 2**32 - 1)), draw(st.integers(2, 32))), strict=False))


@st.composite
def ipv6_cidrs(draw: st.DrawFn) -> str:
    return str(ipaddress.IPv6Network((draw(st.integers(0, 2**128 - 1)), draw(st.integers(1, 128))), strict=False))


# Strings that would change the manifests' structure if a template pasted them in as text.
LOOKS_LIKE_MARKUP = st.sampled_from(
    [
        "{{ 7*7 }}",
        "{% raw %}x{% endraw %}",
        "a: b\nkind: Secret",
        "x\n---\nkind: Secret",
        "- item",
        "&anchor *alias",
        "!!python/object:os.system",
        '"quoted" # not a comment',
        "${HOME}",
        "'",
        "<<",
        "null",
        "true",
        "0x1F",
        "\u2028line\u2029separators\x85",
        "\ufeffbom",
        "tab\tand\r\nCRLF",
        "ünïcødé ✓ 日本語 🚀",
    ]
)
# What a YAML stream may carry: no C0/C1 controls but tab, line breaks and NEL, no surrogates or U+FFFE/F.
YAML_CHARACTERS = st.characters(
    exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff", include_characters="\t\n\r\x85"
)
# Characters a manifest cannot carry: kubectl kustomize refuses them even escaped.
NOT_YAML_CHARACTERS = st.sampled_from(["\x00", "\x1b[2J", "\x7f", "\x8a", "\x9b", "\ud800", "\ufffe", "\uffff"])
TAG_TEXT = st.one_of(LOOKS_LIKE_MARKUP, st.text(YAML_CHARACTERS, max_size=40))
TAG_KEYS = st.one_of(TAG_TEXT, st.text(YAML_CHARACTERS, min_size=1, max_size=127)).map(
    # Reserved prefixes and the empty key are the broken cases below, not these.
    lambda key: f"x{key}" if not key or key.lower().startswith(("aws:", "kubernetes.io/", "sigs.k8s.io/")) else key
)
TAG_VALUES = st.one_of(
    TAG_TEXT, st.text(YAML_CHARACTERS, max_size=256), st.integers(-(10**12), 10**12), st.floats(), st.just("v" * 256)
)
VALID_TAGS = st.one_of(st.just(OMIT), st.none(), st.dictionaries(TAG_KEYS, TAG_VALUES, max_size=6))

# --- values it refuses -------------------------------------------------------------------------

WRONG_TYPES = st.sampled_from([12, 2.5, True, None, [], ["a"], {}, {"a": 1}])
# Each of these trips PyYAML itself: tags its constructors cannot build, aliases, nesting, sizes.
RAW_YAML = st.sampled_from(
    [
        Raw("!!int abc"),
        Raw("!!float x"),
        Raw("!!bool maybe"),
        Raw("!!timestamp x"),
        Raw("2020-13-45"),
        Raw("!!binary '%%%'"),
        Raw("!!set {a}"),
        Raw("!!python/name:os.system"),
        Raw("*nowhere"),
        Raw("&loop [*loop]"),
        Raw("&loop {a: *loop}"),
        Raw("{a: 1"),
        Raw('"unterminated'),
        Raw("9" * 5000),
        Raw("[" * 600 + "]" * 600),
        # A billion laughs: cheap to load (aliases share nodes), costly to walk node by node.
        Raw(
            "[&l0 [x, x, x, x, x, x, x, x, x, x], "
            + ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7))
            + "]"
        ),
    ]
)


def mistakes(*own: Strategy) -> Strategy:
    """A field's own mistakes and, now and then, YAML that PyYAML itself chokes on."""
    return st.sampled_from([st.one_of(*own)] * 4 + [RAW_YAML]).flatmap(lambda strategy: strategy)


def not_a_cidr(prefix: str) -> Strategy:
    return st.sampled_from([f"{prefix}/33", "banana", f"{prefix}/16\n", "", f"{prefix}/abc"])


OPEN_CIDRS = st.sampled_from(["0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0", "0.0.0.0/00", "0::/0", "::0/0"])
OPEN_IPV4_CIDRS = st.sampled_from(["0.0.0.0/0", "0.0.0.0/0.0.0.0", "0.0.0.0/00"])


@dataclass(frozen=True)
class Section:
    """A top-level field: how to write it so the spec accepts it, and ways to get it wrong."""

    valid: Strategy
    invalid: Strategy


def mapping_section(
    fields: Mapping[str, Section], unknown: Sequence[str], valid_whole: Strategy | None = None
) -> Section:
    valid = valid_whole if valid_whole is not None else st.one_of(st.just(OMIT), st.none(), valid_mapping(fields))

    @st.composite
    def invalid(draw: st.DrawFn) -> Any:
        how = draw(st.sampled_from(["field", "field", "field", "unknown", "not a mapping"]))
        if how == "not a mapping":
            return draw(mistakes(st.sampled_from([12, "yes", ["a", "b"], True])))
        base = draw(valid_mapping(fields))
        if how == "unknown":
            return {**base, draw(st.sampled_from(unknown)): draw(st.sampled_from([1, "x", None]))}
        key = draw(st.sampled_from(sorted(fields)))
        return {**base, key: draw(fields[key].invalid)}

    return Section(valid, invalid())


def valid_mapping(fields: Mapping[str, Section]) -> Strategy:
    return st.fixed_dictionaries({key: section.valid for key, section in fields.items()})


NETWORK = mapping_section(
    {
        "cidr": Section(
            st.one_of(st.just(OMIT), st.none(), vpc_cidrs()),
            mistakes(
                not_a_cidr("10.20.0.0"),
                st.sampled_from(["10.0.0.0/8", "10.20.0.0/26", "fd00::/48", "10.20.0.1/16", 167772160]),
                WRONG_TYPES.filter(lambda v: v is not None),
            ),
        ),
        "zones": Section(
            st.one_of(st.just(OMIT), st.integers(1, 6)),
            mistakes(st.sampled_from([0, 7, -1, 10**30, "three", "2", True, 2.5, None])),
        ),
        "natGateways": Section(
            st.sampled_from([OMIT, "single", "per-zone"]),
            mistakes(st.sampled_from(["double", "Single", "per_zone", "single\n", 1, None, ["single"]])),
        ),
        "endpoints": Section(
            st.one_of(
                st.sampled_from([OMIT, None, []]),
                st.lists(st.sampled_from(spec.KNOWN_ENDPOINTS), unique=True, max_size=len(spec.KNOWN_ENDPOINTS)),
            ),
            mistakes(st.sampled_from([["s3", "dynamo"], ["s3", "s3"], ["S3"], ["s3 "], "s3", [1], {"s3": True}])),
        ),
    },
    unknown=["cidrs", "vpc", "zone", "nat"],
)


@st.composite
def valid_bastion(draw: st.DrawFn) -> Any:
    shape = draw(st.sampled_from(["mapping", "mapping", "mapping", "omitted", "null"]))
    if shape != "mapping":
        return OMIT if shape == "omitted" else None
    cidrs = draw(st.lists(ssh_cidrs(), max_size=3))
    opt_in: Any = draw(st.sampled_from([OMIT, False, True]))
    if draw(st.booleans()):
        # The opt-in is what makes an open CIDR acceptable.
        cidrs.append(draw(OPEN_IPV4_CIDRS))
        opt_in = True
    body = {
        "enabled": draw(st.sampled_from([OMIT, True, False])),
        "allowedCIDRs": draw(st.sampled_from([OMIT, None, cidrs, cidrs])),
        "allowOpenSSH": opt_in,
        "instanceType": draw(st.one_of(st.just(OMIT), INSTANCE_TYPES)),
    }
    return body


NOT_INSTANCE_TYPES = mistakes(
    st.sampled_from(["tiny", "M6I.LARGE", "m6i", "m6i.large\n", "m6i.huge", "", ".large", 5, None])
)

BASTION = mapping_section(
    {
        "enabled": Section(st.sampled_from([OMIT, True, False]), st.sampled_from(["yes please", "true", 1, None])),
        "allowedCIDRs": Section(
            st.one_of(st.just(OMIT), st.lists(ssh_cidrs(), max_size=3)),
            mistakes(
                OPEN_CIDRS.map(lambda c: [c]),
                ipv6_cidrs().map(lambda c: [c]),
                st.just(["0.0.0.0/1", "128.0.0.0/1"]),
                not_a_cidr("203.0.113.0").map(lambda c: [c]),
                st.sampled_from([["203.0.113.1/24"], "203.0.113.0/24", [1], [None], {"a": "b"}]),
            ),
        ),
        "allowOpenSSH": Section(st.sampled_from([OMIT, False]), st.sampled_from(["yes", "true", 1, None, []])),
        "instanceType": Section(st.one_of(st.just(OMIT), INSTANCE_TYPES), NOT_INSTANCE_TYPES),
    },
    unknown=["allowedCidrs", "allowOpenSsh", "enable", "ami"],
    valid_whole=valid_bastion(),
)

CONTROL_PLANE = mapping_section(
    {
        "replicas": Section(
            st.one_of(st.just(OMIT), st.sampled_from([1, 3, 5, 7])),
            mistakes(st.sampled_from([0, 2, 4, -1, -3, "3", 3.0, True, None])),
        ),
        "instanceType": Section(st.one_of(st.just(OMIT), INSTANCE_TYPES), NOT_INSTANCE_TYPES),
    },
    unknown=["replica", "version", "machineType"],
)

POOL_FIELDS = {
    "name": Section(
        POOL_NAMES,
        mistakes(
            st.sampled_from(["Default Pool", "-pool", "pool-", "pool_1", "p" * 21, "", "p\n---\nkind: Secret"]),
            st.sampled_from(["default\n", "ümlaut", 7, None, ["a"]]),
        ),
    ),
    "replicas": Section(
        st.one_of(st.just(OMIT), st.integers(0, 10)),
        mistakes(st.sampled_from([-1, -(10**20), 2**31, "2", 1.5, False, None])),
    ),
    "instanceType": Section(st.one_of(st.just(OMIT), INSTANCE_TYPES), NOT_INSTANCE_TYPES),
}
POOLS = st.lists(valid_mapping(POOL_FIELDS), max_size=3, unique_by=lambda pool: str(pool["name"]))


@st.composite
def broken_workers(draw: st.DrawFn) -> Any:
    how = draw(st.sampled_from(["pool field", "pool field", "duplicate", "unknown", "not a mapping", "not a list"]))
    pools = draw(POOLS.filter(bool)) if how != "not a list" else []
    index = draw(st.integers(0, max(len(pools) - 1, 0)))
    if how == "not a list":
        return draw(mistakes(st.sampled_from([{"name": "x"}, "default", 3])))
    if how == "duplicate":
        return [*pools, dict(pools[index])]
    if how == "not a mapping":
        pools[index] = draw(st.sampled_from(["default", None, ["name", "x"], 3]))
        return pools
    if how == "unknown":
        pools[index] = {**pools[index], draw(st.sampled_from(["size", "replica", "labels"])): 1}
        return pools
    key = draw(st.sampled_from(sorted(POOL_FIELDS)))
    pools[index] = {**pools[index], key: draw(POOL_FIELDS[key].invalid)}
    if key == "name":
        # Without a name at all: the one required field of a pool.
        pools[index] = draw(st.sampled_from([pools[index], {k: v for k, v in pools[index].items() if k != "name"}]))
    return pools


TAGS = Section(
    VALID_TAGS,
    mistakes(
        st.just({f"k{i}": "v" for i in range(spec.MAX_USER_TAGS + 1)}),
        st.sampled_from(["aws:created", "AWS:x", "kubernetes.io/cluster/x", "sigs.k8s.io/y", "", "k" * 129]).map(
            lambda key: {key: "x", "team": "platform"}
        ),
        st.builds(lambda value: {"team": value}, st.sampled_from(["v" * 257, {"a": 1}, ["x"], True, None])),
        st.sampled_from([{1: "x"}, {None: "x"}, {True: "x"}, {2.5: "x"}, ["team"], "team=platform"]),
        NOT_YAML_CHARACTERS.map(lambda char: {"team": f"a{char}b"}),
        NOT_YAML_CHARACTERS.map(lambda char: {f"k{char}": "v"}),
    ),
)

SECTIONS: dict[str, Section] = {
    "region": Section(
        st.one_of(st.just(OMIT), REGIONS),
        mistakes(
            st.sampled_from(["mars-1", "US-EAST-1", "us-east-1\n", "us-east", "us-east-1 ", "", "us-east-1a"]),
            WRONG_TYPES,
        ),
    ),
    "kubernetesVersion": Section(
        st.one_of(st.just(OMIT), VERSIONS),
        mistakes(
            st.sampled_from(["1.31.2", "v1.20.0", "v1.40.0", "v1.31", "v1.31.2\n", "v1.31.2-rc.1", "v2.31.0"]),
            st.sampled_from([1.31, 131, None, Raw("2024-01-01")]),
        ),
    ),
    "network": NETWORK,
    "bastion": BASTION,
    "controlPlane": CONTROL_PLANE,
    "workers": Section(st.one_of(st.just(OMIT), POOLS), broken_workers()),
    "sshKeyName": Section(
        st.one_of(st.just(OMIT), st.just(""), TAG_TEXT.filter(lambda text: text.isascii())),
        mistakes(
            st.sampled_from([12, None, ["ops"], "clé", "k" * 256]), NOT_YAML_CHARACTERS.map(lambda char: f"ops{char}")
        ),
    ),
    "tags": TAGS,
}
# What a broken document gets wrong: a section, the name, an unknown key, or the file as a whole.
# Hypothesis picks the first entry most: one with many ways to go wrong, the whole file last.
BREAKABLE = [
    "workers",
    "network",
    "tags",
    "bastion",
    "controlPlane",
    "region",
    "kubernetesVersion",
    "sshKeyName",
    "name",
    "unknown",
    "file",
]
assert set(BREAKABLE) == {*SECTIONS, "name", "unknown", "file"}
UNKNOWN_TOP_LEVEL = st.sampled_from(["clusterName", "natGateways", "spec", "Name", "replicas", "kind", "metadata"])
NOT_A_SPEC = st.sampled_from(["", "- a\n- b\n", "just a string\n", "name: [\n", "42\n", "name: demo\n---\nname: x\n"])


def error_root(field_name: str) -> str:
    """The top-level field an error's field path starts with."""
    return re.split(r"[.\[]", field_name, maxsplit=1)[0]


def to_text(document: Any) -> str:
    """`document` as YAML, each Raw pasted in where yaml.safe_dump put its placeholder."""
    raws: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            raws.append(node.text)
            return f"rawyaml{len(raws) - 1}x"
        if isinstance(node, dict):
            return {key: swap(value) for key, value in node.items() if value is not OMIT}
        if isinstance(node, list):
            return [swap(item) for item in node]
        return node

    text = yaml.safe_dump(swap(document), sort_keys=False, allow_unicode=True)
    for index, raw in enumerate(raws):
        text = text.replace(f"rawyaml{index}x", raw, 1)
    return text


@st.composite
def cases(draw: st.DrawFn, broken_sections: bool) -> Case:
    """A spec document: every section valid, or one to three of them broken."""
    cli_name = draw(CLUSTER_NAMES)
    broken: set[str] = set()
    if broken_sections:
        broken = set(draw(st.lists(st.sampled_from(BREAKABLE), min_size=1, max_size=3)))
        if "file" in broken:
            return Case(cli_name, draw(NOT_A_SPEC), frozenset({FILE}))
    document: dict[Any, Any] = {}
    if "name" in broken:
        document["name"] = draw(
            mistakes(
                # The name of another cluster than the one the command line names.
                st.just(cli_name[:-1] + ("0" if cli_name[-1] != "0" else "1")),
                st.sampled_from(["Demo", "de_mo", "-demo", "a" * 23, "a", "1demo", "../evil", "demo\n", ""]),
                WRONG_TYPES,
            )
        )
    else:
        document["name"] = draw(st.sampled_from([OMIT, cli_name]))
    opted_in = False
    for key, section in SECTIONS.items():
        document[key] = draw(section.invalid if key in broken else section.valid)
        if key == "bastion" and isinstance(document[key], dict):
            opted_in = document[key].get("allowOpenSSH") is True
    if "unknown" in broken:
        unknown = draw(UNKNOWN_TOP_LEVEL)
        document[unknown] = "x"
        broken = (broken - {"unknown"}) | {error_root(unknown)}
    order = draw(st.permutations(list(document)))
    return Case(cli_name, to_text({key: document[key] for key in order}), frozenset(broken), opted_in)


# Every field left to its default.
DEFAULTS = Case("a0", "name: a0\n")
# Inputs that once escaped as another exception, a multi-line message or a manifest kustomize
# refuses; the first seven are this test's own (shrunk) findings.
REGRESSIONS = (
    Case("a0", "tags: !!bool maybe\n", frozenset({"tags"})),  # KeyError from PyYAML
    Case("a0", "tags: 2020-13-45\n", frozenset({"tags"})),  # ValueError: month must be in 1..12
    Case("a0", "bastion: &loop [*loop]\n", frozenset({"bastion"})),  # RecursionError walking lines
    Case("a0", 'tags:\n  team: "a\\x7Fb"\n', frozenset({"tags"})),  # accepted, then kustomize failed
    Case("a0", 'kubernetesVersion: "v1.31.2\\n"\n', frozenset({"kubernetesVersion"})),  # `$` passed it
    Case("a0", 'network: {natGateways: "single\\n"}\n', frozenset({"network"})),  # two-line message
    Case("a0", 'name: "a0\\n"\n', frozenset({"name"})),  # two-line message
    Case("a0", "bastion: {allowedCIDRs: [0.0.0.0/0.0.0.0]}\n", frozenset({"bastion"})),  # open SSH, no opt-in
    Case("a0", f"tags: {'[' * 600}{']' * 600}\n", frozenset({"tags"})),  # RecursionError in PyYAML
    Case("a0", f"tags: {{team: {'9' * 5000}}}\n", frozenset({"tags"})),  # ValueError: over 4300 digits
)


def with_regressions(test: Callable[..., None]) -> Callable[..., None]:
    for case in REGRESSIONS:
        test = example(valid=DEFAULTS, broken=case)(test)
    return test


# --- what a parsed spec renders against --------------------------------------------------------


def outputs_for(cluster: ClusterSpec) -> NetworkOutputs:
    """What Terraform would report for this spec: one private and one public subnet per zone."""
    vpc = ipaddress.IPv4Network(cluster.vpc_cidr)
    zones = [f"{cluster.region}{chr(ord('a') + i)}" for i in range(cluster.network.zones)]
    # Sixteen blocks: room for six zones' two subnets, down to /28 in a /24.
    blocks = list(vpc.subnets(new_prefix=vpc.prefixlen + 4))
    subnets = tuple(
        Subnet(
            id=f"subnet-{'pub' if public else 'prv'}{i}",
            cidr=str(blocks[i + (len(zones) if public else 0)]),
            zone=zone,
            public=public,
        )
        for public in (False, True)
        for i, zone in enumerate(zones)
    )
    nat_count = 1 if cluster.network.nat_gateways == "single" else len(zones)
    return NetworkOutputs(
        region=cluster.region,
        vpc_id="vpc-0abc1234",
        vpc_cidr=str(vpc),
        subnets=subnets,
        nat_gateway_ids=tuple(f"nat-{i}" for i in range(nat_count)),
        endpoint_ids=tuple((service, f"vpce-{i}") for i, service in enumerate(cluster.network.endpoints)),
        bastion=Bastion("i-0bastion", "sg-0bastion", "198.51.100.7") if cluster.bastion.enabled else None,
        secrets_key_arn=SECRETS_KEY_ARN,
        audit_log_group=f"/fleet-pipeline/{cluster.name}/kube-apiserver-audit",
    )


def identifiers(cluster: ClusterSpec) -> list[str]:
    """The values the spec checks against a pattern, which reach manifests as names and fields."""
    return [
        cluster.name,
        cluster.region,
        cluster.kubernetes_version,
        cluster.bastion.instance_type,
        cluster.control_plane.instance_type,
        *(value for pool in cluster.workers for value in (pool.name, pool.instance_type)),
    ]


@pytest.mark.reliability(
    "bad input",
    "random cluster specs (valid, wrong-typed, malformed, YAML-hostile) render schema-valid manifests "
    "or are refused with exit 2 and a one-line message naming the field",
)
def test_random_specs_render_valid_manifests_or_are_refused_as_bad_input(
    record_property: Callable[[str, object], None],
) -> None:
    schemas = schemas_from(os.environ["PIPELINE_CRDS_DIR"])
    counts = {"rendered": 0, "refused": 0}

    def refused_or_rendered(case: Case) -> str:
        try:
            parsed = spec.parse(spec_source.read(case.text, "spec.yaml"), case.cli_name)
            cluster = allocation.place(parsed, allocation.Known(frozenset(), None))
        except SpecError as refused:
            message = str(refused)
            assert refused.exit_code == EXIT_BAD_INPUT
            assert len(message.splitlines()) == 1, message
            assert message.startswith("spec field '") and refused.field, message
            assert case.broken, f"a spec of valid fields only was refused: {message}"
            root = error_root(refused.field)
            # A refusal names the field that was broken, not one that was right.
            assert root == FILE or root in case.broken, (root, sorted(case.broken))
            event(f"refused: {root}")
            return "refused"
        # An unknown field or a document that is no mapping is never accepted.
        assert not case.broken - {*SECTIONS, "name"}, sorted(case.broken)
        for value in identifiers(cluster):
            assert value == value.strip() and len(value.splitlines()) == 1, repr(value)
        if not case.open_ssh_opted_in:
            assert all(ipaddress.ip_network(cidr).prefixlen > 0 for cidr in cluster.bastion.allowed_cidrs)
        manifests = render.render(cluster, outputs_for(cluster), TEMPLATES, MANAGEMENT_CIDRS)
        validate.validate(manifests, schemas, ())
        assert manifests.cluster == case.cli_name
        event("rendered")
        return "rendered"

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # A valid document and a broken one per example: Hypothesis favours some choices so much in
    # generation that one mixed stream of documents could miss either outcome.
    @given(valid=cases(broken_sections=False), broken=cases(broken_sections=True))
    @with_regressions
    def check(valid: Case, broken: Case) -> None:
        for case in (valid, broken):
            note(f"cli name {case.cli_name!r}, broken {sorted(case.broken)}:\n{case.text}")
            outcome = refused_or_rendered(case)
            # The regression examples are fixed inputs, not random ones: the outcome counts only these.
            if valid is not DEFAULTS:
                counts[outcome] += 1

    check()

    total = counts["rendered"] + counts["refused"]
    assert counts["rendered"] > 0, counts
    assert counts["refused"] > 0, counts
    record_property(
        "outcome",
        f"{total} random specs: {counts['rendered']} rendered schema-valid manifests, "
        f"{counts['refused']} refused with exit 2",
    )
