"""The security baseline's rules: each refuses a cluster that breaks it, naming its id and control, and passes one
that keeps it; exceptions only from a sound policy-exceptions.yaml, and never past their expiry."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import policy, policy_exceptions
from pipeline.errors import FleetFileInvalid
from pipeline.model import Manifest, Manifests
from pipeline.render import render
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TODAY = datetime.date(2026, 12, 2)

Doc = dict[str, Any]


def rendered() -> Manifests:
    return render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)


def changed(manifests: Manifests, kind: str, change: Callable[[Doc], object]) -> Manifests:
    """The cluster's files with `change` made to every object of `kind`."""
    files = []
    for manifest in manifests.files:
        docs = list(yaml.safe_load_all(manifest.content))
        if any(isinstance(d, dict) and d.get("kind") == kind for d in docs):
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == kind:
                    change(doc)
            files.append(Manifest(manifest.path, yaml.safe_dump_all(docs, sort_keys=True)))
        else:
            files.append(manifest)
    return Manifests(manifests.cluster, tuple(files))


def machine(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def kubeadm(doc: Doc) -> Doc:
    config: Doc = doc["spec"]["kubeadmConfigSpec"]
    return config


def api_args(doc: Doc) -> list[Doc]:
    args: list[Doc] = kubeadm(doc)["clusterConfiguration"]["apiServer"]["extraArgs"]
    return args


def file_written(doc: Doc, path: str) -> Doc:
    return next(f for f in kubeadm(doc)["files"] if f["path"] == path)


def rewrite(doc: Doc, path: str, change: Callable[[Doc], object]) -> None:
    file = file_written(doc, path)
    content = yaml.safe_load(file["content"])
    change(content)
    file["content"] = yaml.safe_dump(content)


def drop_arg(doc: Doc, name: str) -> None:
    kubeadm(doc)["clusterConfiguration"]["apiServer"]["extraArgs"] = [a for a in api_args(doc) if a["name"] != name]


def drop_role(role: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        labels = doc.get("metadata", {}).get("labels", {})
        if labels.get("fleet.pipeline/provides") == role:
            del labels["fleet.pipeline/provides"]

    return change


def set_chart(chart: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        if doc["metadata"].get("labels", {}).get("fleet.pipeline/provides") == "cni":
            doc["spec"]["chart"]["spec"]["chart"] = chart

    return change


def aescbc(config: Doc) -> None:
    config["resources"][0]["providers"] = [{"aescbc": {"keys": [{"name": "k", "secret": "c2VjcmV0"}]}}]


def psa_privileged(config: Doc) -> None:
    config["plugins"][0]["configuration"]["defaults"]["enforce"] = "privileged"


# Each manifest rule and one way a cluster breaks it.
BREAKS: dict[str, tuple[str, Callable[[Doc], object]]] = {
    "machines.imdsv2": (
        "AWSMachineTemplate",
        lambda d: machine(d)["instanceMetadataOptions"].update(httpTokens="optional"),
    ),
    "machines.encrypted-root": ("AWSMachineTemplate", lambda d: machine(d)["rootVolume"].update(encrypted=False)),
    "machines.explicit-ssh-key": ("AWSMachineTemplate", lambda d: machine(d).pop("sshKeyName")),
    "api.ingress-limited": (
        "AWSCluster",
        lambda d: d["spec"]["controlPlaneLoadBalancer"]["ingressRules"][0].update(cidrBlocks=["0.0.0.0/0"]),
    ),
    "controlplane.pod-security": (
        "KubeadmControlPlane",
        lambda d: rewrite(d, "/etc/kubernetes/admission-config.yaml", psa_privileged),
    ),
    "controlplane.secrets-kms": (
        "KubeadmControlPlane",
        lambda d: rewrite(d, "/etc/kubernetes/encryption-config.yaml", aescbc),
    ),
    "controlplane.audit-log": ("KubeadmControlPlane", lambda d: drop_arg(d, "audit-log-path")),
    "controlplane.audit-log-shipped": ("HelmRelease", drop_role("audit-logs")),
    "workload.network-policies": ("HelmRelease", set_chart("flannel")),
}


def test_every_manifest_rule_has_a_breaking_case_here():
    assert set(BREAKS) == {rule.id for rule in policy.RULES if rule.checks == "manifests"}


def test_a_rendered_cluster_keeps_every_rule():
    assert policy.check_manifests(rendered()) == []


@pytest.mark.parametrize("rule_id", sorted(BREAKS))
def test_a_cluster_that_breaks_a_rule_is_refused_with_its_id_and_control(rule_id: str):
    kind, change = BREAKS[rule_id]

    found = policy.check_manifests(changed(rendered(), kind, change))

    assert {f.rule.id for f in found} == {rule_id}
    rule = policy.BY_ID[rule_id]
    assert all(str(f).startswith(f"clusters/demo: policy {rule_id} ({rule.control}): ") for f in found)


def test_no_network_policies_add_on_is_a_finding():
    found = policy.check_manifests(changed(rendered(), "Kustomization", drop_role("network-policies")))
    assert [str(f) for f in found] == [
        "clusters/demo: policy workload.network-policies (SC-7): no add-on applies the default-deny NetworkPolicies"
    ]


def test_the_rendered_baseline_denies_by_default_and_leaves_dns_open():
    spec = sample_spec().model_copy(
        update={"network_policies": sample_spec().network_policies.model_copy(update={"namespaces": ("payments",)})}
    )
    manifests = render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    baseline = next(m for m in manifests.files if m.path == "clusters/demo/baseline/networkpolicies.yaml")
    docs = [d for d in yaml.safe_load_all(baseline.content) if d]
    policies = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"] for d in docs if d["kind"] == "NetworkPolicy"
    }

    assert set(policies) == {(ns, name) for ns in ("default", "payments") for name in ("default-deny", "allow-dns")}
    assert policies[("default", "default-deny")] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    [dns] = policies[("payments", "allow-dns")]["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == ["payments"]
    assert namespaces[0]["metadata"]["annotations"] == {"kustomize.toolkit.fluxcd.io/prune": "disabled"}


def test_the_api_admits_the_management_cluster_and_the_listed_cidrs_only():
    spec = sample_spec().model_copy(
        update={"api_server": sample_spec().api_server.model_copy(update={"allowed_cidrs": ("203.0.113.0/24",)})}
    )
    manifests = render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    awscluster = yaml.safe_load(next(m for m in manifests.files if m.path.endswith("awscluster.yaml")).content)
    [rule] = awscluster["spec"]["controlPlaneLoadBalancer"]["ingressRules"]

    assert rule["cidrBlocks"] == ["198.51.100.7/32", "203.0.113.0/24"]
    assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 6443, 6443)


def test_the_encryption_configuration_names_only_a_kms_v2_plugin_and_holds_no_key():
    [kcp] = [d for d in yaml.safe_load_all(next(m for m in rendered().files if "controlplane" in m.path).content)]
    config = yaml.safe_load(file_written(kcp, "/etc/kubernetes/encryption-config.yaml")["content"])
    plugin = yaml.safe_load(file_written(kcp, "/etc/kubernetes/manifests/aws-encryption-provider.yaml")["content"])

    [entry] = config["resources"]
    assert entry["resources"] == ["secrets"]
    assert [list(p) for p in entry["providers"]] == [["kms"]]
    assert entry["providers"][0]["kms"]["apiVersion"] == "v2"
    assert set(entry["providers"][0]["kms"]) == {"apiVersion", "name", "endpoint", "timeout"}
    # The plugin is told the key by its ARN, an identifier; the key's material never leaves KMS.
    assert f"--key={sample_outputs().secrets_key_arn}" in plugin["spec"]["containers"][0]["command"]


def state(*resources: Mapping[str, Any]) -> list[policy.Resource]:
    return policy.state_resources(resources)


def resource(kind: str, label: str, **attributes: Any) -> dict[str, Any]:
    return {
        "mode": "managed",
        "type": kind,
        "name": label,
        "module": "module.network",
        "instances": [{"attributes": attributes}],
    }


KEPT = (
    resource("aws_vpc", "this", id="vpc-1"),
    resource("aws_flow_log", "this", vpc_id="vpc-1", traffic_type="ALL"),
    resource("aws_default_security_group", "this", ingress=[], egress=[]),
    resource("aws_route_table", "private", tags={"kubernetes.io/cluster/demo": "shared"}),
    resource("aws_vpc_security_group_ingress_rule", "ssh", from_port=22, cidr_ipv4="203.0.113.0/24"),
    resource("aws_cloudwatch_log_group", "flow", name="/f", kms_key_id="arn:k", retention_in_days=365),
)
NETWORK_BREAKS: dict[str, tuple[int, dict[str, Any] | None]] = {
    "network.flow-logs": (1, None),
    "network.default-sg-closed": (
        2,
        resource("aws_default_security_group", "this", ingress=[{"from_port": 0}], egress=[]),
    ),
    "network.route-tables-tagged": (3, resource("aws_route_table", "private", tags={"Name": "x"})),
    "network.bastion-ssh-limited": (
        4,
        resource("aws_vpc_security_group_ingress_rule", "ssh", from_port=22, cidr_ipv4="0.0.0.0/0"),
    ),
    "network.logs-encrypted": (5, resource("aws_cloudwatch_log_group", "flow", name="/f", retention_in_days=365)),
}


def test_every_network_rule_has_a_breaking_case_here():
    assert set(NETWORK_BREAKS) == {rule.id for rule in policy.RULES if rule.checks == "network"}


def test_a_network_that_keeps_every_rule_passes():
    assert policy.check_network("demo", state(*KEPT)) == []


@pytest.mark.parametrize("rule_id", sorted(NETWORK_BREAKS))
def test_a_network_that_breaks_a_rule_is_refused_with_its_id_and_control(rule_id: str):
    index, replacement = NETWORK_BREAKS[rule_id]
    resources = [*KEPT]
    if replacement is None:
        del resources[index]
    else:
        resources[index] = replacement

    found = policy.check_network("demo", state(*resources))

    assert {f.rule.id for f in found} == {rule_id}
    assert str(found[0]).startswith(f"clusters/demo: policy {rule_id} ({policy.BY_ID[rule_id].control}): ")


EXCEPTION = {"rule": "api.ingress-limited", "cluster": "demo", "reason": "partner load tests", "expires": "2027-01-31"}


def exceptions_file(*entries: Mapping[str, Any]) -> str:
    return yaml.safe_dump({"exceptions": [dict(e) for e in entries]}, sort_keys=False).replace(
        "'2027-01-31'", "2027-01-31"
    )


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("reason", "policy-exceptions.yaml exceptions[0].reason: missing; say why the rule does not apply"),
        (
            "expires",
            "policy-exceptions.yaml exceptions[0].expires: missing or not a date; give the day it ends, as YYYY-MM-DD",
        ),
        ("cluster", "policy-exceptions.yaml exceptions[0].cluster: missing; name the cluster it is for"),
    ],
)
def test_an_exception_without_a_reason_an_expiry_or_a_cluster_is_refused_naming_the_field(missing: str, message: str):
    entry = {k: v for k, v in EXCEPTION.items() if k != missing}
    with pytest.raises(FleetFileInvalid) as caught:
        policy_exceptions.parse(exceptions_file(entry))
    assert str(caught.value) == message


def test_an_exceptions_file_that_is_not_a_mapping_is_refused():
    with pytest.raises(FleetFileInvalid, match=r"policy-exceptions\.yaml: is not a mapping"):
        policy_exceptions.parse("- rule: api.ingress-limited\n")


def test_no_file_and_an_empty_one_except_nothing():
    assert (
        policy_exceptions.parse(None) == () == policy_exceptions.parse("") == policy_exceptions.parse("exceptions:\n")
    )


def test_an_exception_for_a_rule_that_does_not_exist_is_refused():
    with pytest.raises(FleetFileInvalid, match=r"exceptions\[0\]\.rule: 'api.open' is not a rule; `verify --explain`"):
        policy_exceptions.parse(exceptions_file({**EXCEPTION, "rule": "api.open"}))


def test_an_exception_in_force_excepts_its_rule_for_its_cluster_only():
    [exception] = policy_exceptions.parse(exceptions_file(EXCEPTION))
    found = [policy.Finding(policy.BY_ID["api.ingress-limited"], cluster, "open") for cluster in ("demo", "web")]

    judged = policy_exceptions.judge(found, [exception], TODAY)

    assert [f.cluster for f in judged.findings] == ["web"]
    assert [(f.cluster, e.reason) for f, e in judged.excepted] == [("demo", "partner load tests")]


def test_an_expired_exception_excepts_nothing_and_says_so():
    [exception] = policy_exceptions.parse(exceptions_file(EXCEPTION))
    later = datetime.date(2027, 2, 1)
    found = [policy.Finding(policy.BY_ID["api.ingress-limited"], "demo", "open")]

    assert policy_exceptions.judge(found, [exception], later).findings == tuple(found)
    assert policy_exceptions.expired([exception], later) == [exception]
    assert policy_exceptions.expiry_finding(exception) == (
        "policy-exceptions.yaml exceptions[0] (api.ingress-limited for demo): expired on 2027-01-31; "
        "renew it with a later expiry, or remove it"
    )


def test_explain_lists_every_rule_with_its_control():
    lines = policy.explain()
    assert len(lines) == len(policy.RULES)
    assert "controlplane.secrets-kms  SC-28  [manifests]" in "\n".join(lines)


def test_a_plan_is_judged_as_it_would_leave_the_network_before_any_id_is_known():
    vpc = {"type": "aws_vpc", "address": "module.network.aws_vpc.this", "values": {"cidr_block": "10.0.0.0/16"}}
    flow = {"type": "aws_flow_log", "address": "module.network.aws_flow_log.this", "values": {"traffic_type": "ALL"}}
    closed = {"type": "aws_default_security_group", "address": "d", "values": {"ingress": [], "egress": []}}

    without = policy.check_network("demo", policy.plan_resources([vpc, closed]))
    assert [f.rule.id for f in without] == ["network.flow-logs"]
    assert policy.check_network("demo", policy.plan_resources([vpc, flow, closed])) == []
