"""Render stage: a cluster spec and its network's outputs become the fleet repo's files for it."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemBytecodeCache, FileSystemLoader, StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from pipeline import addons, journal, yaml_docs
from pipeline.errors import ManifestInvalid
from pipeline.iam_names import CONTROL_PLANE_PROFILE, NODES_PROFILE
from pipeline.model import Manifest, Manifests, NetworkOutputs
from pipeline.spec import LOOKUP_FORMAT, ClusterSpec, WorkerPool

# Cloud-init expands this on the instance: the AWS cloud provider needs node
# names that equal the instance's private DNS name.
NODE_NAME = "{{ ds.meta_data.local_hostname }}"
# Pod and service ranges must not overlap the VPC; a VPC is at most a /16, so
# one of two disjoint candidates is always free.
POD_CIDRS = ("192.168.0.0/16", "172.16.0.0/16")
SERVICE_CIDRS = ("10.96.0.0/12", "172.20.0.0/16")
AUDIT_POLICY_FILE = "/etc/kubernetes/audit-policy.yaml"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
ADMISSION_CONFIG_FILE = "/etc/kubernetes/admission-config.yaml"
ENCRYPTION_CONFIG_FILE = "/etc/kubernetes/encryption-config.yaml"
KMS_PLUGIN_MANIFEST = "/etc/kubernetes/manifests/aws-encryption-provider.yaml"
KMS_SOCKET_DIR = "/var/run/kmsplugin"
# kubernetes-sigs/aws-encryption-provider, which serves the KMS v2 API.
KMS_PLUGIN_IMAGE = "registry.k8s.io/kms/aws-encryption-provider:v0.3.0"
# The workload cluster's own objects (applied through its kubeconfig), beside the cluster's folder.
BASELINE_DIR = "baseline"

# Each rendered from templates/cluster/NAME.j2 into clusters/CLUSTER/NAME.
_CLUSTER_FILES = (
    "addons.yaml",
    "awscluster.yaml",
    "cluster.yaml",
    "controlplane.yaml",
    "machinetemplates.yaml",
    "namespace.yaml",
    "workers.yaml",
)
HEALTH_CHECKS = "healthchecks.yaml"
# Cluster API's cluster-autoscaler integration reads a MachineDeployment's bounds from these.
AUTOSCALER_MIN = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
AUTOSCALER_MAX = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"


# How Flux tells, from Cluster API's v1beta2 conditions, that a cluster is built (CEL, on the Cluster object).
CLUSTER_HEALTH = {
    "health_timeout": "45m",
    # Neither current nor failed is in progress; every field is guarded, as a new Cluster has no status yet.
    "cluster_current": (
        "has(status.observedGeneration) && status.observedGeneration == metadata.generation && "
        "has(status.conditions) && status.conditions.exists(c, c.type == 'Available' && c.status == 'True')"
    ),
    "cluster_failed": "has(status.phase) && status.phase == 'Failed'",
}


@dataclass(frozen=True)
class RenderCheckpoint(journal.Flat):
    """What the render stage leaves in the run journal: the fingerprint of the manifests it rendered."""

    manifests: str


def flux_name(cluster: str) -> str:
    """The per-cluster Flux Kustomization's name, which is also what its health is reported under."""
    return f"cluster-{cluster}"


# Characters JSON leaves raw that YAML reads as line breaks or refuses as unprintable.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


class YamlValue(str):
    """Text produced by the `yaml` filter: the only kind of value a template may print."""


def to_yaml(value: object) -> YamlValue:
    # JSON is YAML: a string with ': ', newlines or '{{' stays one quoted scalar.
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return YamlValue(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def render(
    spec: ClusterSpec,
    outputs: NetworkOutputs,
    templates_dir: Path,
    management_cidrs: Sequence[str],
    *,
    compiled: Path | None = None,
) -> Manifests:
    """The cluster's files. `management_cidrs`: the fleet's management cluster's egress addresses, which
    always reach the API server. `compiled`: where the compiled templates are kept between runs."""
    env = _environment(templates_dir, compiled)
    _refuse_sensitive(env, outputs.sensitive)
    context = _context(spec, outputs, env, templates_dir, management_cidrs)
    cluster_dir = f"clusters/{spec.name}"
    names = sorted((*_CLUSTER_FILES, HEALTH_CHECKS) if spec.health_checks.enabled else _CLUSTER_FILES)
    files = [
        Manifest(f"{cluster_dir}/{name}", env.get_template(f"cluster/{name}.j2").render(context)) for name in names
    ]
    kustomization = env.get_template("cluster/kustomization.yaml.j2").render(context, resources=names)
    files.append(Manifest(f"{cluster_dir}/kustomization.yaml", kustomization))
    baseline = env.get_template("cluster/baseline/networkpolicies.yaml.j2").render(context)
    files.append(Manifest(f"{cluster_dir}/{BASELINE_DIR}/networkpolicies.yaml", baseline))
    listing = env.get_template("cluster/kustomization.yaml.j2").render(context, resources=["networkpolicies.yaml"])
    files.append(Manifest(f"{cluster_dir}/{BASELINE_DIR}/kustomization.yaml", listing))
    flux = env.get_template("flux/kustomization.yaml.j2").render(
        context, flux_name=flux_name(spec.name), flux_path=f"./{cluster_dir}", **CLUSTER_HEALTH
    )
    files.append(Manifest(f"flux/clusters/{spec.name}.yaml", flux))
    return Manifests(spec.name, tuple(sorted(files, key=lambda m: m.path)))


def _refuse_sensitive(env: SandboxedEnvironment, sensitive: tuple[str, ...]) -> None:
    """Fail on any template naming a sensitive output, before anything is rendered.

    Its value is never in the context, so rendering would fail anyway; this says why.
    """
    if not sensitive:
        return
    findings = [
        f"template {name} references Terraform output '{output}', which is marked sensitive; "
        "a secret never goes into the fleet repo: remove the reference, or deliver the value out of band"
        for name in sorted(env.list_templates(extensions=["j2"]))
        for output in sorted(_names_used(env, name) & set(sensitive))
    ]
    if findings:
        raise ManifestInvalid(findings)


def _names_used(env: SandboxedEnvironment, template: str) -> set[str]:
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, template)
    return meta.find_undeclared_variables(env.parse(source))


@functools.cache
def _environment(templates_dir: Path, compiled: Path | None) -> SandboxedEnvironment:
    if compiled is not None:
        compiled.mkdir(parents=True, exist_ok=True)
    env = SandboxedEnvironment(
        loader=FileSystemLoader(templates_dir),
        # Compiling the templates costs a run more than rendering them; each is compiled again when its source changes.
        bytecode_cache=None if compiled is None else FileSystemBytecodeCache(str(compiled)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_only_yaml_values,
    )
    env.filters["yaml"] = to_yaml
    return env


def _only_yaml_values(value: object) -> str:
    if not isinstance(value, YamlValue):
        raise TypeError(f"template prints {value!r} without the `yaml` filter")
    return value


def _context(
    spec: ClusterSpec,
    outputs: NetworkOutputs,
    env: SandboxedEnvironment,
    templates_dir: Path,
    management_cidrs: Sequence[str],
) -> dict[str, Any]:
    public = [] if spec.api_server.internal else [s.id for s in outputs.subnets if s.public]
    private = [s.id for s in outputs.subnets if not s.public]
    zones = sorted({s.zone for s in outputs.subnets if not s.public} or {s.zone for s in outputs.subnets})
    context: dict[str, Any] = {
        "name": spec.name,
        "region": outputs.region,
        "kubernetes_version": spec.kubernetes_version,
        "ssh_key_name": spec.ssh_key_name,
        "tags": dict(spec.tags),
        "vpc_id": outputs.vpc_id,
        "vpc_cidr": outputs.vpc_cidr,
        "subnet_ids": [s.id for s in outputs.subnets],
        "lb_scheme": "internet-facing" if public else "internal",
        "lb_subnet_ids": public or private,
        "pods_cidr": _free_range(POD_CIDRS, outputs.vpc_cidr),
        "services_cidr": _free_range(SERVICE_CIDRS, outputs.vpc_cidr),
        "control_plane": spec.control_plane,
        "control_plane_name": f"{spec.name}-control-plane",
        "zones": ",".join(zones),
        "health_checks": spec.health_checks,
        "image": _image(spec),
        "node_name": NODE_NAME,
        "api_ingress_cidrs": sorted({*management_cidrs, *spec.api_server.allowed_cidrs}),
        "pod_security": spec.pod_security,
        "policy_namespaces": ["default", *spec.network_policies.namespaces],
        "audit": {
            "policy_file": AUDIT_POLICY_FILE,
            "log_dir": AUDIT_LOG_DIR,
            "log_path": f"{AUDIT_LOG_DIR}/audit.log",
        },
        "admission": {"file": ADMISSION_CONFIG_FILE},
        "kms": {
            "config_file": ENCRYPTION_CONFIG_FILE,
            "socket_dir": KMS_SOCKET_DIR,
            "socket": f"{KMS_SOCKET_DIR}/socket.sock",
            "image": KMS_PLUGIN_IMAGE,
            "key_arn": outputs.secrets_key_arn,
        },
    }
    context["control_plane_files"] = [
        {"path": AUDIT_POLICY_FILE, "content": (templates_dir / "cluster" / "audit-policy.yaml").read_text("utf-8")},
        {
            "path": ADMISSION_CONFIG_FILE,
            "content": env.get_template("cluster/files/admission-config.yaml.j2").render(context),
        },
        {
            "path": ENCRYPTION_CONFIG_FILE,
            "content": env.get_template("cluster/files/encryption-config.yaml.j2").render(context),
        },
        {
            "path": KMS_PLUGIN_MANIFEST,
            "content": env.get_template("cluster/files/aws-encryption-provider.yaml.j2").render(context),
        },
    ]
    control_plane = spec.control_plane
    machines = [
        _machine(
            env,
            context,
            "control-plane",
            control_plane.instance_type,
            control_plane.root_volume_size,
            profile=CONTROL_PLANE_PROFILE,
        )
    ]
    pools = []
    for pool in spec.workers:
        machine = _machine(env, context, pool.name, pool.instance_type, pool.root_volume_size, profile=NODES_PROFILE)
        machines.append(machine)
        pool_name = f"{spec.name}-{pool.name}"
        spanned = [zone for zone in zones if pool.zones is None or zone in pool.zones]
        pools.append(
            {
                "name": pool_name,
                "machine_template": machine["name"],
                "deployments": _deployments(spec.name, pool_name, pool, spanned, outputs.region),
            }
        )
    context["addons"] = _addons(spec, context["pods_cidr"], outputs)
    context["control_plane_template"] = machines[0]["name"]
    context["machines"] = machines
    context["pools"] = pools
    return context


def _addons(spec: ClusterSpec, pods_cidr: str, outputs: NetworkOutputs) -> list[dict[str, Any]]:
    """Each add-on as Flux installs it into the workload cluster, in the order a cluster needs them.

    Each chart waits for the one before it (`dependsOn`): the CNI, then the CCM, then the CSI driver,
    then the audit log shipper and the spec's own.
    """
    region = outputs.region
    ours: dict[str, dict[str, Any]] = {
        "cilium": {
            "ipam": {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": [pods_cidr]}},
            "cluster": {"name": spec.name},
        },
        "awsCloudControllerManager": {
            "image": {"tag": addons.ccm_image(spec.kubernetes_version)},
            "args": ["--v=2", "--cloud-provider=aws", f"--cluster-name={spec.name}", "--configure-cloud-routes=false"],
            "hostNetworking": True,
            # The cluster's own region, so it never depends on reaching the instance metadata service.
            "env": [{"name": "AWS_REGION", "value": region}],
            # It initialises the nodes, so it must run on nodes that are not initialised yet.
            "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
            "tolerations": [
                {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            ],
        },
        "awsEbsCsiDriver": {
            # Only the control plane's role may create and attach volumes (terraform/modules/node-iam).
            "controller": {
                "region": region,
                "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
            },
            "storageClasses": [
                {
                    "name": "gp3",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                    "parameters": {"type": "gp3", "encrypted": "true"},
                    "volumeBindingMode": "WaitForFirstConsumer",
                    "allowVolumeExpansion": True,
                }
            ],
        },
        "fluentBit": _audit_shipper(region, outputs.audit_log_group),
    }
    chosen = {
        "cilium": spec.addons.cilium,
        "awsCloudControllerManager": spec.addons.aws_cloud_controller_manager,
        "awsEbsCsiDriver": spec.addons.aws_ebs_csi_driver,
        "fluentBit": spec.addons.fluent_bit,
    }
    installed: list[dict[str, Any]] = []
    for entry in addons.CATALOGUE:
        wanted = chosen[entry.key]
        if wanted.enabled:
            chart = {
                "repository": entry.chart.repository,
                "name": entry.chart.name,
                "version": wanted.version or entry.chart.version,
                # Their Helm repositories publish no signatures for Flux to check.
                "verify": None,
            }
            installed.append(
                {
                    "name": entry.release,
                    "role": entry.role,
                    "namespace": "kube-system",
                    "chart": chart,
                    "path": None,
                    "depends_on": None,
                    "values": _merged(ours[entry.key], wanted.values),
                }
            )
    for extra in spec.addons.extra:
        installed.append(
            {
                "name": extra.name,
                "role": extra.provides,
                "namespace": extra.namespace,
                "chart": None if extra.chart is None else extra.chart.model_dump(),
                "path": extra.path,
                "depends_on": None,
                "values": dict(extra.values),
            }
        )
    installed.append(
        {
            "name": "network-policies",
            "role": "network-policies",
            "namespace": None,  # the policies name their own namespaces
            "chart": None,
            "path": f"./clusters/{spec.name}/{BASELINE_DIR}",
            "depends_on": None,
            "values": {},
        }
    )
    # The defaults, and an add-on that stands in for one, in the order a cluster needs them; the rest after.
    installed.sort(key=lambda a: addons.ORDER.index(a["role"]) if a["role"] in addons.ORDER else len(addons.ORDER))
    # HelmReleases wait on HelmReleases only; a folder's Kustomization applies once the cluster answers.
    charts = [addon for addon in installed if addon["chart"] is not None]
    for before, after in itertools.pairwise(charts):
        after["depends_on"] = f"{spec.name}-{before['name']}"
    return installed


def _audit_shipper(region: str, log_group: str) -> dict[str, Any]:
    """Fluent Bit's values: the audit log of each control-plane node, tailed and sent to the cluster's log group."""
    return {
        "kind": "DaemonSet",
        # The node's role is reachable from the host network only (IMDSv2 with one hop).
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
        "config": {
            "inputs": (
                "[INPUT]\n    Name tail\n    Tag kube-apiserver-audit\n"
                f"    Path {AUDIT_LOG_DIR}/*.log\n    Parser json\n    DB /var/log/flb-kube-apiserver-audit.db\n"
                "    Mem_Buf_Limit 50MB\n    Skip_Long_Lines On\n"
            ),
            "filters": "",
            "outputs": (
                "[OUTPUT]\n    Name cloudwatch_logs\n    Match kube-apiserver-audit\n"
                f"    region {region}\n    log_group_name {log_group}\n"
                "    log_stream_prefix ${HOSTNAME}-\n    auto_create_group false\n"
            ),
        },
    }


def _image(spec: ClusterSpec) -> dict[str, str]:
    """The AWSMachineTemplate fields that choose the image; none: Cluster API AWS's own lookup."""
    if spec.image is None:
        return {}
    if spec.image.lookup is None:
        return {"ami_id": (spec.image.ami or {})[spec.region]}
    lookup = spec.image.lookup
    return {"org": lookup.org, "base_os": lookup.base_os, "format": lookup.format or LOOKUP_FORMAT}


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's own rule for values: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        merged[key] = _merged(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


def _deployments(cluster: str, pool_name: str, pool: WorkerPool, zones: list[str], region: str) -> list[dict[str, Any]]:
    """A MachineDeployment per zone, each with its share of the pool's size, the first zones taking the rest."""
    deployments = []
    for index, zone in enumerate(zones):
        name = f"{pool_name}-{zone.removeprefix(region) or zone}"
        deployment: dict[str, Any] = {
            "name": name,
            "zone": zone,
            "labels": {"cluster.x-k8s.io/cluster-name": cluster, "cluster.x-k8s.io/deployment-name": name},
            "annotations": {},
            "replicas": _share(pool.replicas, index, len(zones)),
        }
        if pool.autoscaling is not None:
            # The autoscaler owns the size: a replicas field here would be set back on every reconcile.
            deployment["replicas"] = None
            deployment["annotations"] = {
                AUTOSCALER_MIN: str(_share(pool.autoscaling.min_size, index, len(zones))),
                AUTOSCALER_MAX: str(_share(pool.autoscaling.max_size, index, len(zones))),
            }
        deployments.append(deployment)
    return deployments


def _share(total: int, index: int, count: int) -> int:
    return total // count + (1 if index < total % count else 0)


def _machine(
    env: SandboxedEnvironment,
    context: Mapping[str, Any],
    role: str,
    instance_type: str,
    root_volume_size: int,
    *,
    profile: str,
) -> dict[str, Any]:
    """An AWSMachineTemplate's values, named after a hash of the spec they render to and the Kubernetes
    version its machines run: an upgrade is new templates, as the image is chosen for each version."""
    machine: dict[str, Any] = {
        "instance_type": instance_type,
        "iam_instance_profile": profile,
        "root_volume_size": root_volume_size,
    }
    rendered = env.get_template("cluster/awsmachinetemplate-spec.yaml.j2").render(context, machine=machine)
    named = {"spec": yaml_docs.document(rendered), "kubernetesVersion": context["kubernetes_version"]}
    canonical = json.dumps(named, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    return {**machine, "name": f"{context['name']}-{role}-{digest}"}


def _free_range(candidates: tuple[str, ...], vpc_cidr: str) -> str:
    vpc = ipaddress.ip_network(vpc_cidr)
    return next(c for c in candidates if not ipaddress.ip_network(c).overlaps(vpc))
