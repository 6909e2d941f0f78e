from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import PROJECT_ROOT
from pipeline.errors import ManifestInvalid
from pipeline.model import Manifests
from pipeline.render import AUTOSCALER_MAX, AUTOSCALER_MIN, render, to_yaml
from pipeline.spec import Addons, WorkerPool
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec

TEMPLATES = PROJECT_ROOT / "templates"


def docs(manifests: Manifests, path: str) -> list[dict[str, Any]]:
    content = {m.path: m.content for m in manifests.files}[path]
    return [d for d in yaml.safe_load_all(content) if d is not None]


def by_kind(manifests: Manifests, kind: str) -> list[dict[str, Any]]:
    return [
        d
        for m in manifests.files
        for d in yaml.safe_load_all(m.content)
        if isinstance(d, dict) and d.get("kind") == kind
    ]


def test_renders_every_file_of_the_cluster_sorted():
    manifests = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    assert manifests.cluster == "demo"
    assert [m.path for m in manifests.files] == [
        "clusters/demo/addons.yaml",
        "clusters/demo/awscluster.yaml",
        "clusters/demo/baseline/kustomization.yaml",
        "clusters/demo/baseline/networkpolicies.yaml",
        "clusters/demo/cluster.yaml",
        "clusters/demo/controlplane.yaml",
        "clusters/demo/healthchecks.yaml",
        "clusters/demo/kustomization.yaml",
        "clusters/demo/machinetemplates.yaml",
        "clusters/demo/namespace.yaml",
        "clusters/demo/workers.yaml",
        "flux/clusters/demo.yaml",
    ]
    kustomization = docs(manifests, "clusters/demo/kustomization.yaml")[0]
    assert kustomization["resources"] == sorted(kustomization["resources"])


def test_same_inputs_render_byte_identical_files():
    first = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    second = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    assert first == second
    assert first.fingerprint() == second.fingerprint()


def test_awscluster_brings_the_terraform_network_by_id_only():
    outputs = sample_outputs()
    awscluster = by_kind(render(sample_spec(), outputs, TEMPLATES, MANAGEMENT_CIDRS), "AWSCluster")[0]

    network = awscluster["spec"]["network"]
    assert network["vpc"] == {"id": outputs.vpc_id}
    assert network["subnets"] == [{"id": s.id} for s in outputs.subnets]
    lb = awscluster["spec"]["controlPlaneLoadBalancer"]
    assert lb["scheme"] == "internet-facing"
    assert lb["subnets"] == [s.id for s in outputs.subnets if s.public]
    assert awscluster["spec"]["bastion"] == {"enabled": False}
    assert awscluster["spec"]["additionalTags"] == {"cost-center": "42", "team": "platform"}


def test_an_internal_api_load_balancer_sits_in_the_private_subnets():
    spec = sample_spec().model_copy(
        update={"api_server": sample_spec().api_server.model_copy(update={"internal": True})}
    )

    lb = by_kind(render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS), "AWSCluster")[0]["spec"][
        "controlPlaneLoadBalancer"
    ]

    assert lb["scheme"] == "internal"
    assert lb["subnets"] == [s.id for s in sample_outputs().subnets if not s.public]


def test_without_public_subnets_the_api_load_balancer_is_internal():
    outputs = sample_outputs()
    private_only = dataclasses.replace(outputs, subnets=tuple(s for s in outputs.subnets if not s.public))

    lb = by_kind(render(sample_spec(), private_only, TEMPLATES, MANAGEMENT_CIDRS), "AWSCluster")[0]["spec"][
        "controlPlaneLoadBalancer"
    ]

    assert lb["scheme"] == "internal"
    assert lb["subnets"] == [s.id for s in private_only.subnets]


def test_cluster_carries_the_fleet_facts_and_v1beta2_refs():
    cluster = by_kind(render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS), "Cluster")[0]

    assert cluster["metadata"]["annotations"] == {
        "fleet.pipeline/region": "us-east-1",
        "fleet.pipeline/vpc-cidr": "10.20.0.0/16",
        "fleet.pipeline/zones": "us-east-1a,us-east-1b,us-east-1c",
    }
    assert cluster["spec"]["infrastructureRef"] == {
        "apiGroup": "infrastructure.cluster.x-k8s.io",
        "kind": "AWSCluster",
        "name": "demo",
    }


def test_pod_range_moves_off_a_vpc_that_would_overlap_it():
    outputs = sample_outputs(cidr="192.168.0.0/16")

    cluster = by_kind(render(sample_spec(cidr="192.168.0.0/16"), outputs, TEMPLATES, MANAGEMENT_CIDRS), "Cluster")[0]

    assert cluster["spec"]["clusterNetwork"]["pods"]["cidrBlocks"] == ["172.16.0.0/16"]


def test_control_plane_runs_external_cloud_provider_and_audit_logging():
    kcp = by_kind(render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS), "KubeadmControlPlane")[0]

    config = kcp["spec"]["kubeadmConfigSpec"]
    api_args = {a["name"]: a["value"] for a in config["clusterConfiguration"]["apiServer"]["extraArgs"]}
    policy_file = api_args["audit-policy-file"]
    written = {f["path"]: yaml.safe_load(f["content"]) for f in config["files"]}
    assert written[policy_file]["kind"] == "Policy"
    mounts = {v["mountPath"] for v in config["clusterConfiguration"]["apiServer"]["extraVolumes"]}
    assert policy_file in mounts
    # Every file the API server is told to read is written to the node and mounted into its pod.
    for arg in ("admission-control-config-file", "encryption-provider-config"):
        assert api_args[arg] in written and api_args[arg] in mounts
    assert str(Path(api_args["audit-log-path"]).parent) in mounts
    external = [{"name": "cloud-provider", "value": "external"}]
    assert config["initConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] == external
    assert config["joinConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] == external
    assert config["clusterConfiguration"]["controllerManager"]["extraArgs"] == external


def test_instance_type_change_renames_only_that_template_and_its_references():
    before = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    spec = sample_spec()
    bigger = (spec.workers[0].model_copy(update={"instance_type": "m6i.2xlarge"}), spec.workers[1])
    after = render(spec.model_copy(update={"workers": bigger}), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    names_before = [t["metadata"]["name"] for t in by_kind(before, "AWSMachineTemplate")]
    names_after = [t["metadata"]["name"] for t in by_kind(after, "AWSMachineTemplate")]
    assert names_before[0] == names_after[0]  # control plane
    assert names_before[2] == names_after[2]  # the other pool
    assert names_before[1] != names_after[1]
    assert names_after[1].startswith("demo-default-")
    assert len(names_after[1]) == len("demo-default-") + 8
    refs = {
        md["metadata"]["name"]: md["spec"]["template"]["spec"]["infrastructureRef"]["name"]
        for md in by_kind(after, "MachineDeployment")
    }
    assert refs == {
        **{f"demo-default-{zone}": names_after[1] for zone in "abc"},
        **{f"demo-batch-{zone}": names_after[2] for zone in "abc"},
    }
    kcp = by_kind(after, "KubeadmControlPlane")[0]
    assert kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]["name"] == names_after[0]


def test_control_plane_instance_type_change_rolls_the_control_plane():
    before = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    spec = sample_spec()
    after = render(
        spec.model_copy(
            update={"control_plane": spec.control_plane.model_copy(update={"instance_type": "m6i.xlarge"})}
        ),
        sample_outputs(),
        TEMPLATES,
        MANAGEMENT_CIDRS,
    )

    def kcp_ref(manifests: Manifests) -> str:
        kcp = by_kind(manifests, "KubeadmControlPlane")[0]
        return str(kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]["name"])

    assert kcp_ref(before) != kcp_ref(after)
    assert kcp_ref(after) in {t["metadata"]["name"] for t in by_kind(after, "AWSMachineTemplate")}


INJECTIONS = ["x\nkind: Secret", "{{ 7*7 }}", "a: {}", '"quoted" # not a comment', "- item", "&anchor *alias"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(v, marks=pytest.mark.reliability("bad input", f"tag 'evil: {{}}' with the value {v!r}"))
        for v in INJECTIONS
    ],
)
def test_tag_values_reach_the_manifest_as_plain_strings(value, record_property):
    spec = sample_spec(tags={"evil: {}": value, "team": "platform"})

    manifests = render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    awscluster = by_kind(manifests, "AWSCluster")[0]
    record_property(
        "outcome",
        f"AWSCluster spec.additionalTags = {awscluster['spec']['additionalTags']!r}; "
        f"Secret objects rendered: {len(by_kind(manifests, 'Secret'))}",
    )
    assert awscluster["spec"]["additionalTags"] == {"evil: {}": value, "team": "platform"}
    assert sorted(awscluster) == ["apiVersion", "kind", "metadata", "spec"]
    assert by_kind(manifests, "Secret") == []


@pytest.mark.reliability("bad input", "worker pool name 'p\\n---\\nkind: Secret' (a YAML document break)")
def test_a_hostile_pool_name_stays_one_scalar(record_property):
    # Built without validation: the spec refuses such a name, and render must hold even past that.
    hostile = WorkerPool.model_construct(name="p\n---\nkind: Secret", replicas=1, instance_type="t3.large")
    spec = sample_spec(workers=(hostile,))

    manifests = render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    names = [md["metadata"]["name"] for md in by_kind(manifests, "MachineDeployment")]
    record_property(
        "outcome",
        f"MachineDeployment names: {names!r}; Secret objects rendered: {len(by_kind(manifests, 'Secret'))}",
    )
    assert by_kind(manifests, "Secret") == []
    assert names == [f"demo-p\n---\nkind: Secret-{zone}" for zone in "abc"]


@given(st.text())
def test_yaml_filter_round_trips_any_string(value):
    assert yaml.safe_load(f"key: {to_yaml(value)}\n") == {"key": value}


@pytest.mark.reliability("fault", "a template edited to print a value without the yaml filter")
def test_a_template_printing_a_value_without_the_filter_fails(tmp_path, record_property):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    namespace = templates / "cluster" / "namespace.yaml.j2"
    namespace.write_text(namespace.read_text() + "  annotations: {note: {{ name }}}\n")

    with pytest.raises(TypeError, match="without the `yaml` filter") as caught:
        render(sample_spec(), sample_outputs(), templates, MANAGEMENT_CIDRS)
    record_property("outcome", f"{type(caught.value).__name__}: {caught.value}")


def test_flux_applies_the_cluster_directory_and_the_namespace_is_restricted():
    manifests = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    flux = docs(manifests, "flux/clusters/demo.yaml")[0]
    assert flux["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert flux["metadata"] == {
        "name": "cluster-demo",
        "namespace": "flux-system",
        "labels": {"fleet.pipeline/cluster": "demo"},
    }
    assert flux["spec"]["path"] == "./clusters/demo"
    assert flux["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "fleet"}
    assert flux["spec"]["prune"] is True
    # It waits for the cluster and each add-on, and that health is what Flux reports to the forge.
    assert flux["spec"]["wait"] is False and flux["spec"]["timeout"] == "45m"
    assert [(c["kind"], c["name"]) for c in flux["spec"]["healthChecks"]] == [
        ("Cluster", "demo"),
        ("HelmRelease", "demo-cilium"),
        ("HelmRelease", "demo-aws-cloud-controller-manager"),
        ("HelmRelease", "demo-aws-ebs-csi-driver"),
        ("HelmRelease", "demo-fluent-bit"),
        ("Kustomization", "demo-network-policies"),
    ]
    [cluster_health] = flux["spec"]["healthCheckExprs"]
    assert (cluster_health["apiVersion"], cluster_health["kind"]) == ("cluster.x-k8s.io/v1beta2", "Cluster")
    assert "c.type == 'Available' && c.status == 'True'" in cluster_health["current"]
    namespace = docs(manifests, "clusters/demo/namespace.yaml")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"]["namespace"] for d in by_kind(manifests, "MachineDeployment")} == {"demo"}


@pytest.mark.reliability("secret", "a template references a Terraform output marked sensitive")
def test_a_template_naming_a_sensitive_output_fails_before_anything_renders(tmp_path, record_property):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    namespace = templates / "cluster" / "namespace.yaml.j2"
    namespace.write_text(namespace.read_text() + "  annotations: {key: {{ bastion_private_key | yaml }}}\n")
    outputs = dataclasses.replace(sample_outputs(), sensitive=("bastion_private_key", "db_password"))

    with pytest.raises(ManifestInvalid) as caught:
        render(sample_spec(), outputs, templates, MANAGEMENT_CIDRS)

    assert caught.value.findings == (
        "template cluster/namespace.yaml.j2 references Terraform output 'bastion_private_key', which is marked "
        "sensitive; a secret never goes into the fleet repo: remove the reference, or deliver the value out of band",
    )
    record_property("outcome", f"{type(caught.value).__name__}: {caught.value}")
    # The same outputs without the reference render: naming a sensitive output is what fails.
    assert render(sample_spec(), outputs, TEMPLATES, MANAGEMENT_CIDRS).files


def test_a_pool_spans_the_zones_with_its_replicas_split_and_every_pool_is_health_checked():
    spec = sample_spec(workers=(WorkerPool(name="default", replicas=5),))
    manifests = render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    deployments = by_kind(manifests, "MachineDeployment")
    assert [(md["metadata"]["name"], md["spec"]["replicas"]) for md in deployments] == [
        ("demo-default-a", 2),
        ("demo-default-b", 2),
        ("demo-default-c", 1),
    ]
    assert [md["spec"]["template"]["spec"]["failureDomain"] for md in deployments] == [
        "us-east-1a",
        "us-east-1b",
        "us-east-1c",
    ]
    control_plane, pool = by_kind(manifests, "MachineHealthCheck")
    assert control_plane["spec"]["selector"]["matchLabels"]["cluster.x-k8s.io/control-plane"] == ""
    assert pool["spec"]["selector"]["matchExpressions"] == [
        {
            "key": "cluster.x-k8s.io/deployment-name",
            "operator": "In",
            "values": ["demo-default-a", "demo-default-b", "demo-default-c"],
        }
    ]
    assert pool["spec"]["checks"]["nodeStartupTimeoutSeconds"] == 1200
    assert {c["timeoutSeconds"] for c in pool["spec"]["checks"]["unhealthyNodeConditions"]} == {300}
    assert "healthchecks.yaml" in docs(manifests, "clusters/demo/kustomization.yaml")[0]["resources"]


def test_a_pool_in_named_zones_with_autoscaler_bounds_leaves_its_size_to_the_autoscaler():
    pool = WorkerPool.model_validate(
        {"name": "batch", "zones": ["us-east-1c", "us-east-1a"], "autoscaling": {"minSize": 1, "maxSize": 5}},
        by_alias=True,
        by_name=False,
    )
    deployments = by_kind(
        render(sample_spec(workers=(pool,)), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS), "MachineDeployment"
    )

    assert [md["metadata"]["name"] for md in deployments] == ["demo-batch-a", "demo-batch-c"]
    assert all("replicas" not in md["spec"] for md in deployments)
    bounds = [
        (md["metadata"]["annotations"][AUTOSCALER_MIN], md["metadata"]["annotations"][AUTOSCALER_MAX])
        for md in deployments
    ]
    assert bounds == [("1", "3"), ("0", "2")]


def test_health_checks_turned_off_render_no_machine_health_checks():
    spec = sample_spec()
    off = spec.model_copy(update={"health_checks": spec.health_checks.model_copy(update={"enabled": False})})
    manifests = render(off, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    assert by_kind(manifests, "MachineHealthCheck") == []
    assert "healthchecks.yaml" not in docs(manifests, "clusters/demo/kustomization.yaml")[0]["resources"]


def releases(manifests: Manifests) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in by_kind(manifests, "HelmRelease")}


def test_the_add_ons_go_to_the_workload_cluster_in_order_with_the_ccm_of_its_minor():
    manifests = render(sample_spec(kubernetes_version="v1.32.3"), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    found = releases(manifests)

    assert list(found) == [
        "demo-cilium",
        "demo-aws-cloud-controller-manager",
        "demo-aws-ebs-csi-driver",
        "demo-fluent-bit",
    ]
    assert {r["spec"]["kubeConfig"]["secretRef"]["name"] for r in found.values()} == {"demo-kubeconfig"}
    assert {r["metadata"]["namespace"] for r in found.values()} == {"demo"}
    assert {r["spec"]["storageNamespace"] for r in found.values()} == {"kube-system"}
    assert "dependsOn" not in found["demo-cilium"]["spec"]
    assert found["demo-aws-cloud-controller-manager"]["spec"]["dependsOn"] == [{"name": "demo-cilium"}]
    assert found["demo-aws-ebs-csi-driver"]["spec"]["dependsOn"] == [{"name": "demo-aws-cloud-controller-manager"}]
    ccm = found["demo-aws-cloud-controller-manager"]["spec"]
    assert ccm["values"]["image"]["tag"] == "v1.32.5"
    assert "--cluster-name=demo" in ccm["values"]["args"]
    assert {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"} in ccm[
        "values"
    ]["tolerations"]
    assert found["demo-cilium"]["spec"]["chart"]["spec"]["version"] == "1.18.2"
    [gp3] = found["demo-aws-ebs-csi-driver"]["spec"]["values"]["storageClasses"]
    assert gp3["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert gp3["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    # Where the node IAM gives volume rights: the control plane.
    csi_controller = found["demo-aws-ebs-csi-driver"]["spec"]["values"]["controller"]
    assert csi_controller["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert csi_controller["region"] == "us-east-1"
    assert ccm["values"]["env"] == [{"name": "AWS_REGION", "value": "us-east-1"}]
    sources = {s["metadata"]["name"]: s["spec"]["url"] for s in by_kind(manifests, "HelmRepository")}
    assert sources["demo-cilium"] == "https://helm.cilium.io/"


OCI = "oci://ghcr.io/acme/charts"


def test_the_spec_turns_a_default_off_pins_another_version_merges_values_and_adds_its_own():
    spec = sample_spec().model_copy(
        update={
            "addons": Addons.model_validate(
                {
                    "cilium": {
                        "version": "1.17.6",
                        "values": {"ipam": {"mode": "kubernetes"}, "hubble": {"enabled": True}},
                    },
                    "awsEbsCsiDriver": {"enabled": False},
                    "extra": [
                        {
                            "name": "metrics-server",
                            "chart": {
                                "repository": "oci://ghcr.io/acme/charts",
                                "name": "metrics-server",
                                "version": "3.12.2",
                            },
                        },
                        {"name": "baseline", "path": "./addons/baseline", "namespace": "default"},
                    ],
                },
                by_alias=True,
                by_name=False,
            )
        }
    )
    manifests = render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    found = releases(manifests)

    assert list(found) == ["demo-cilium", "demo-aws-cloud-controller-manager", "demo-fluent-bit", "demo-metrics-server"]
    cilium = found["demo-cilium"]["spec"]
    assert cilium["chart"]["spec"]["version"] == "1.17.6"
    assert cilium["values"]["ipam"] == {
        "mode": "kubernetes",
        "operator": {"clusterPoolIPv4PodCIDRList": ["192.168.0.0/16"]},
    }
    assert cilium["values"]["hubble"] == {"enabled": True}
    assert found["demo-metrics-server"]["spec"]["dependsOn"] == [{"name": "demo-fluent-bit"}]
    oci = {s["metadata"]["name"]: s["spec"] for s in by_kind(manifests, "HelmRepository")}["demo-metrics-server"]
    assert oci == {"interval": "1h", "type": "oci", "url": OCI}
    [folder] = [k for k in by_kind(manifests, "Kustomization") if k.get("metadata", {}).get("name") == "demo-baseline"]
    assert folder["spec"]["path"] == "./addons/baseline"
    assert folder["spec"]["kubeConfig"]["secretRef"]["name"] == "demo-kubeconfig"
    assert folder["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"}


@pytest.mark.parametrize(
    ("image", "fields"),
    [
        (None, {}),
        (
            {"ami": {"us-east-1": "ami-0123456789abcdef0", "eu-west-1": "ami-0fedcba9876543210"}},
            {"ami": {"id": "ami-0123456789abcdef0"}},
        ),
        (
            {"lookup": {"org": "258751437250", "baseOS": "ubuntu-24.04"}},
            {
                "imageLookupOrg": "258751437250",
                "imageLookupBaseOS": "ubuntu-24.04",
                "imageLookupFormat": "capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*",
            },
        ),
    ],
    ids=["capa-default", "ami-of-the-region", "lookup"],
)
def test_every_machine_template_boots_the_image_the_spec_chose(image, fields):
    spec = sample_spec()
    if image is not None:
        spec = type(spec).model_validate({**spec.model_dump(), "image": image})

    templates = by_kind(render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS), "AWSMachineTemplate")

    chosen = {"ami", "imageLookupOrg", "imageLookupBaseOS", "imageLookupFormat"}
    assert len(templates) == 3
    for template in templates:
        machine = template["spec"]["template"]["spec"]
        assert {k: v for k, v in machine.items() if k in chosen} == fields


def test_flux_verifies_a_signed_oci_chart_before_installing_it():
    chart = {"repository": OCI, "name": "metrics-server", "version": "3.12.2"}
    extra = [
        {"name": "signed", "chart": {**chart, "verify": {"provider": "cosign"}}},
        {"name": "keyed", "chart": {**chart, "verify": {"provider": "notation", "secretRef": "notation-keys"}}},
        {"name": "plain", "chart": chart},
    ]
    addons = Addons.model_validate({"extra": extra}, by_alias=True, by_name=False)

    found = releases(
        render(sample_spec().model_copy(update={"addons": addons}), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    )

    assert found["demo-signed"]["spec"]["chart"]["spec"]["verify"] == {"provider": "cosign"}
    assert found["demo-keyed"]["spec"]["chart"]["spec"]["verify"] == {
        "provider": "notation",
        "secretRef": {"name": "notation-keys"},
    }
    assert "verify" not in found["demo-plain"]["spec"]["chart"]["spec"]
    assert "verify" not in found["demo-cilium"]["spec"]["chart"]["spec"]
