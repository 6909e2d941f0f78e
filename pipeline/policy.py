"""The security baseline as rules you can name: each with an id, why it holds, and the NIST SP 800-53 rev. 5
control it serves, checked on a cluster's rendered manifests (`validate` and `verify`) and on its network's
Terraform state (`new-cluster`, after Terraform applied it).

A rule that does not hold is a finding, unless `policy-exceptions.yaml` on main excepts it for
that cluster with a reason and an expiry date (`policy_exceptions`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline import addons, yaml_docs
from pipeline.model import Manifests

# Charts whose CNI enforces NetworkPolicies.
ENFORCING_CNIS = frozenset({"cilium", "calico", "tigera-operator"})

Objects = Sequence[Mapping[str, Any]]
Resources = Sequence["Resource"]


@dataclass(frozen=True)
class Rule:
    id: str
    control: str  # NIST SP 800-53 rev. 5
    reason: str  # one line: what holds, and why
    checks: str  # "manifests" or "network"
    where: str  # the file that makes it hold


@dataclass(frozen=True)
class Resource:
    """A Terraform resource instance as the state (or a plan) records it."""

    type: str
    address: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Finding:
    rule: Rule
    cluster: str
    problem: str

    def __str__(self) -> str:
        return f"clusters/{self.cluster}: policy {self.rule.id} ({self.rule.control}): {self.problem}"


RULES: tuple[Rule, ...] = (
    Rule(
        "machines.imdsv2", "AC-3", "machines require IMDSv2 with one hop, so pods cannot take the node's role",
        "manifests", "templates/cluster/awsmachinetemplate-spec.yaml.j2",
    ),
    Rule(
        "machines.encrypted-root", "SC-28", "machines' root volumes are encrypted at rest",
        "manifests", "templates/cluster/awsmachinetemplate-spec.yaml.j2",
    ),
    Rule(
        "machines.explicit-ssh-key", "AC-17", "machines get an SSH key only when the spec names one, never CAPA's",
        "manifests", "templates/cluster/awsmachinetemplate-spec.yaml.j2",
    ),
    Rule(
        "api.ingress-limited", "SC-7", "the Kubernetes API admits only the management cluster and the listed CIDRs",
        "manifests", "templates/cluster/awscluster.yaml.j2",
    ),
    Rule(
        "controlplane.pod-security", "AC-6", "Pod Security enforces baseline or more, audits and warns at restricted",
        "manifests", "templates/cluster/files/admission-config.yaml.j2",
    ),
    Rule(
        "controlplane.secrets-kms", "SC-28", "Secrets are encrypted in etcd by KMS v2 alone, no key in the files",
        "manifests", "templates/cluster/files/encryption-config.yaml.j2",
    ),
    Rule(
        "controlplane.audit-log", "AU-2", "the API server writes an audit log by policy",
        "manifests", "templates/cluster/controlplane.yaml.j2",
    ),
    Rule(
        "controlplane.audit-log-shipped", "AU-9", "the audit log is shipped off the nodes, to CloudWatch Logs",
        "manifests", "pipeline/render.py (_audit_shipper)",
    ),
    Rule(
        "workload.network-policies", "SC-7", "default-deny NetworkPolicies, enforced by the CNI, from the first pod on",
        "manifests", "templates/cluster/baseline/networkpolicies.yaml.j2",
    ),
    Rule(
        "network.flow-logs", "AU-12", "the VPC records every accepted and rejected flow, kept for a set retention",
        "network", "terraform/modules/network/main.tf",
    ),
    Rule(
        "network.default-sg-closed", "SC-7", "the VPC's default security group admits and sends nothing",
        "network", "terraform/modules/network/main.tf",
    ),
    Rule(
        "network.route-tables-tagged", "CM-8", "route tables carry the cluster tag, as CAPA's own-VPC guide asks",
        "network", "terraform/modules/network/main.tf",
    ),
    Rule(
        "network.bastion-ssh-limited", "AC-17", "the bastion admits SSH from the listed CIDRs only, never the internet",
        "network", "terraform/modules/bastion/main.tf",
    ),
    Rule(
        "network.logs-encrypted", "AU-9", "log groups are encrypted with a KMS key of the cluster's",
        "network", "terraform/stacks/cluster",
    ),
)  # fmt: skip
BY_ID = {rule.id: rule for rule in RULES}


def check_manifests(manifests: Manifests) -> list[Finding]:
    """Every manifest rule on one cluster's rendered files."""
    objects = _objects(manifests)
    found: list[Finding] = []
    for rule_id, check in _MANIFEST_CHECKS.items():
        found += [Finding(BY_ID[rule_id], manifests.cluster, problem) for problem in check(objects)]
    return found


def check_network(cluster: str, resources: Resources) -> list[Finding]:
    """Every network rule on the resources of one cluster's Terraform state or plan."""
    found: list[Finding] = []
    for rule_id, check in _NETWORK_CHECKS.items():
        found += [Finding(BY_ID[rule_id], cluster, problem) for problem in check(resources)]
    return found


def state_resources(resources: Iterable[Mapping[str, Any]]) -> list[Resource]:
    """The resource instances of a Terraform state's (format version 4) resources."""
    found = []
    for resource in resources:
        if resource.get("mode") != "managed":
            continue
        prefix = f"{resource['module']}." if resource.get("module") else ""
        for index, instance in enumerate(resource.get("instances", [])):
            key = instance.get("index_key", index)
            address = f"{prefix}{resource['type']}.{resource['name']}[{json.dumps(key)}]"
            found.append(Resource(resource["type"], address, instance.get("attributes") or {}))
    return found


def plan_resources(planned: Iterable[Mapping[str, Any]]) -> list[Resource]:
    """The resources of a Terraform plan as it would leave them (terraform.planned_resources)."""
    return [Resource(r["type"], r["address"], r["values"]) for r in planned]


def explain() -> list[str]:
    """One line per rule, for `verify --explain`."""
    return [f"{rule.id}  {rule.control}  [{rule.checks}]  {rule.reason}" for rule in RULES]


# Manifest checks: each yields the problems it finds, one line each.


def _objects(manifests: Manifests) -> list[Mapping[str, Any]]:
    found = []
    for manifest in manifests.files:
        if manifest.path.endswith("kustomization.yaml"):
            continue
        try:
            docs = yaml_docs.documents(manifest.content)
        except yaml_docs.Error:
            continue  # the schema check reports it
        found += [doc for doc in docs if isinstance(doc, Mapping)]
    return found


def _of_kind(objects: Objects, kind: str) -> list[Mapping[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _name(obj: Mapping[str, Any]) -> str:
    return str(_dig(obj, "metadata", "name"))


def _machine_specs(objects: Objects) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for template in _of_kind(objects, "AWSMachineTemplate"):
        spec = _dig(template, "spec", "template", "spec")
        yield _name(template), spec if isinstance(spec, Mapping) else {}


def _imdsv2(objects: Objects) -> Iterator[str]:
    for name, spec in _machine_specs(objects):
        options = spec.get("instanceMetadataOptions") or {}
        if options.get("httpTokens") != "required":
            yield f"AWSMachineTemplate/{name} allows IMDSv1: set instanceMetadataOptions.httpTokens: required"
        if options.get("httpPutResponseHopLimit", 1) != 1:
            yield f"AWSMachineTemplate/{name} lets pods reach the metadata service: set httpPutResponseHopLimit: 1"


def _encrypted_root(objects: Objects) -> Iterator[str]:
    for name, spec in _machine_specs(objects):
        if _dig(spec, "rootVolume", "encrypted") is not True:
            yield f"AWSMachineTemplate/{name} has an unencrypted root volume: set rootVolume.encrypted: true"


def _explicit_ssh_key(objects: Objects) -> Iterator[str]:
    for name, spec in _machine_specs(objects):
        if not isinstance(spec.get("sshKeyName"), str):
            yield f"AWSMachineTemplate/{name} leaves sshKeyName out, so CAPA adds its default key: set it (empty: none)"


def _ingress_limited(objects: Objects) -> Iterator[str]:
    for cluster in _of_kind(objects, "AWSCluster"):
        rules = _dig(cluster, "spec", "controlPlaneLoadBalancer", "ingressRules")
        if not rules:
            yield f"AWSCluster/{_name(cluster)} has no API ingress rules, so CAPA admits 6443 from everywhere"
            continue
        for rule in rules:
            for cidr in rule.get("cidrBlocks") or []:
                if _whole_internet(cidr):
                    yield f"AWSCluster/{_name(cluster)} admits the Kubernetes API from {cidr}"


def _whole_internet(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _control_plane_files(objects: Objects) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The first KubeadmControlPlane's API server arguments, and the files it writes by path (parsed)."""
    for control_plane in _of_kind(objects, "KubeadmControlPlane"):
        config = _dig(control_plane, "spec", "kubeadmConfigSpec") or {}
        args = {
            a.get("name"): a.get("value") for a in _dig(config, "clusterConfiguration", "apiServer", "extraArgs") or []
        }
        files = {}
        for file in config.get("files") or []:
            try:
                files[file.get("path")] = yaml_docs.document(str(file.get("content", "")))
            except yaml_docs.Error:
                files[file.get("path")] = None
        return args, files
    return {}, {}


def _pod_security(objects: Objects) -> Iterator[str]:
    args, files = _control_plane_files(objects)
    config = files.get(args.get("admission-control-config-file"))
    plugins = _dig(config, "plugins") or []
    psa = next(
        (p.get("configuration") for p in plugins if isinstance(p, Mapping) and p.get("name") == "PodSecurity"), None
    )
    defaults = _dig(psa, "defaults") or {}
    if psa is None:
        yield "the API server has no PodSecurity admission configuration (admission-control-config-file)"
        return
    if defaults.get("enforce") not in ("baseline", "restricted"):
        yield f"Pod Security enforces {defaults.get('enforce')!r}: enforce baseline or restricted"
    for mode in ("audit", "warn"):
        if defaults.get(mode) != "restricted":
            yield f"Pod Security {mode}s at {defaults.get(mode)!r}: {mode} at restricted"


def _secrets_kms(objects: Objects) -> Iterator[str]:
    args, files = _control_plane_files(objects)
    config = files.get(args.get("encryption-provider-config"))
    if config is None:
        yield "Secrets are stored in etcd unencrypted: no encryption-provider-config"
        return
    for entry in _dig(config, "resources") or []:
        if "secrets" not in (entry.get("resources") or []):
            continue
        for provider in entry.get("providers") or []:
            kind = next(iter(provider), None)
            if kind != "kms" or _dig(provider, "kms", "apiVersion") != "v2":
                yield f"the encryption configuration names provider {kind!r} for Secrets: only a KMS v2 plugin"
        return
    yield "the encryption configuration does not cover secrets"


def _audit_log(objects: Objects) -> Iterator[str]:
    args, files = _control_plane_files(objects)
    if args.get("audit-policy-file") not in files or not args.get("audit-log-path"):
        yield "the API server writes no audit log: set audit-policy-file and audit-log-path"


def _provided(objects: Objects) -> dict[str, Mapping[str, Any]]:
    return {
        str(role): obj
        for obj in objects
        if obj.get("kind") in ("HelmRelease", "Kustomization")
        and (role := _dig(obj, "metadata", "labels", addons.ROLE_LABEL)) is not None
    }


def _audit_shipped(objects: Objects) -> Iterator[str]:
    if "audit-logs" not in _provided(objects):
        yield "no add-on ships the audit log off the nodes: enable addons.fluentBit or provide audit-logs"


def _network_policies(objects: Objects) -> Iterator[str]:
    provided = _provided(objects)
    if "network-policies" not in provided:
        yield "no add-on applies the default-deny NetworkPolicies"
    cni = provided.get("cni")
    chart = _dig(cni, "spec", "chart", "spec", "chart") if cni is not None else None
    if cni is not None and chart not in ENFORCING_CNIS:
        yield f"the CNI ({chart or _name(cni)}) is not one known to enforce NetworkPolicies: use Cilium or Calico"


_MANIFEST_CHECKS: dict[str, Callable[[Objects], Iterator[str]]] = {
    "machines.imdsv2": _imdsv2,
    "machines.encrypted-root": _encrypted_root,
    "machines.explicit-ssh-key": _explicit_ssh_key,
    "api.ingress-limited": _ingress_limited,
    "controlplane.pod-security": _pod_security,
    "controlplane.secrets-kms": _secrets_kms,
    "controlplane.audit-log": _audit_log,
    "controlplane.audit-log-shipped": _audit_shipped,
    "workload.network-policies": _network_policies,
}


# Network checks, on Terraform resources.


def _of_type(resources: Resources, kind: str) -> list[Resource]:
    return [r for r in resources if r.type == kind]


def _flow_logs(resources: Resources) -> Iterator[str]:
    vpcs = _of_type(resources, "aws_vpc")
    flows = [r for r in _of_type(resources, "aws_flow_log") if r.attributes.get("traffic_type") == "ALL"]
    if vpcs and not flows:
        yield "the VPC has no flow log of all traffic"
        return
    # A plan knows no ids yet; the state names each VPC and what it logs.
    logged = {r.attributes.get("vpc_id") for r in flows}
    for vpc in sorted(str(v) for r in vpcs if (v := r.attributes.get("id")) and v not in logged):
        yield f"VPC {vpc} has no flow log of all traffic"


def _default_sg_closed(resources: Resources) -> Iterator[str]:
    groups = _of_type(resources, "aws_default_security_group")
    if _of_type(resources, "aws_vpc") and not groups:
        yield "the VPC's default security group keeps AWS's allow-all rules: manage it with no rules"
    for group in groups:
        # A list of rules; in a plan, rules left out of the configuration are known only after apply.
        if any(isinstance(group.attributes.get(way), list) and group.attributes[way] for way in ("ingress", "egress")):
            yield f"{group.address} has rules: empty it"


def _route_tables_tagged(resources: Resources) -> Iterator[str]:
    for table in _of_type(resources, "aws_route_table"):
        tags = table.attributes.get("tags") or {}
        if not any(key.startswith("kubernetes.io/cluster/") for key in tags):
            yield f"{table.address} lacks the kubernetes.io/cluster/NAME tag"


def _bastion_ssh_limited(resources: Resources) -> Iterator[str]:
    for rule in _of_type(resources, "aws_vpc_security_group_ingress_rule"):
        attributes = rule.attributes
        if attributes.get("from_port") == 22 and _whole_internet(str(attributes.get("cidr_ipv4") or "")):
            yield f"{rule.address} admits SSH from {attributes.get('cidr_ipv4')}"


def _logs_encrypted(resources: Resources) -> Iterator[str]:
    for group in _of_type(resources, "aws_cloudwatch_log_group"):
        if not group.attributes.get("kms_key_id"):
            yield f"{group.address} ({group.attributes.get('name')}) is not encrypted with a KMS key"
        if not group.attributes.get("retention_in_days"):
            yield f"{group.address} ({group.attributes.get('name')}) has no retention"


_NETWORK_CHECKS: dict[str, Callable[[Resources], Iterator[str]]] = {
    "network.flow-logs": _flow_logs,
    "network.default-sg-closed": _default_sg_closed,
    "network.route-tables-tagged": _route_tables_tagged,
    "network.bastion-ssh-limited": _bastion_ssh_limited,
    "network.logs-encrypted": _logs_encrypted,
}
