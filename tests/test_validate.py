from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.errors import ManifestInvalid
from pipeline.fleet import Neighbour, recorded_cidr
from pipeline.model import Manifest, Manifests
from pipeline.render import render
from pipeline.schemas import Schemas
from pipeline.validate import validate
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec, schemas_from

TEMPLATES = PROJECT_ROOT / "templates"
Doc = dict[str, Any]


@pytest.fixture
def schemas() -> Schemas:
    return schemas_from(os.environ["PIPELINE_CRDS_DIR"])


def cluster(name: str = "demo", cidr: str = "10.20.0.0/16") -> Manifests:
    return render(sample_spec(name=name, cidr=cidr), sample_outputs(cidr=cidr), TEMPLATES, MANAGEMENT_CIDRS)


def edit(manifests: Manifests, path: str, change: Callable[[list[Doc]], None]) -> Manifests:
    files = []
    for manifest in manifests.files:
        if manifest.path != path:
            files.append(manifest)
            continue
        docs = list(yaml.safe_load_all(manifest.content))
        change(docs)
        files.append(Manifest(path, yaml.safe_dump_all(docs, sort_keys=True)))
    return dataclasses.replace(manifests, files=tuple(files))


def findings(manifests: Manifests, schemas: Schemas, fleet: list[Manifests] | None = None) -> list[str]:
    with pytest.raises(ManifestInvalid) as raised:
        validate(manifests, schemas, recorded(fleet or []))
    return list(raised.value.findings)


def recorded(clusters: list[Manifests]) -> list[Neighbour]:
    """Other clusters as the fleet records them: each name, and its Cluster's CIDR from its cluster.yaml."""
    files = {c.cluster: {m.path: m.content for m in c.files} for c in clusters}
    return [Neighbour(name, recorded_cidr(f[f"clusters/{name}/cluster.yaml"])) for name, f in files.items()]


def test_rendered_cluster_passes_schemas_kustomize_and_fleet_rules(schemas):
    fleet = recorded([cluster("alpha", "10.30.0.0/16"), cluster("beta", "10.40.0.0/16")])

    validate(cluster(), schemas, fleet)


def test_unknown_field_is_named_with_file_object_and_path(schemas):
    def add_field(docs: list[Doc]) -> None:
        docs[0]["spec"]["network"]["vpc"]["cidr"] = "10.20.0.0/16"

    bad = edit(cluster(), "clusters/demo/awscluster.yaml", add_field)

    assert findings(bad, schemas) == [
        "clusters/demo/awscluster.yaml: AWSCluster/demo .spec.network.vpc.cidr: unknown field"
    ]


def test_unknown_metadata_field_is_rejected(schemas):
    def add_field(docs: list[Doc]) -> None:
        docs[0]["metadata"]["labelz"] = {"a": "b"}

    bad = edit(cluster(), "clusters/demo/cluster.yaml", add_field)

    assert findings(bad, schemas) == ["clusters/demo/cluster.yaml: Cluster/demo .metadata.labelz: unknown field"]


def test_wrong_type_is_reported(schemas):
    def stringly_replicas(docs: list[Doc]) -> None:
        docs[0]["spec"]["replicas"] = "3"

    bad = edit(cluster(), "clusters/demo/controlplane.yaml", stringly_replicas)

    assert findings(bad, schemas) == [
        "clusters/demo/controlplane.yaml: KubeadmControlPlane/demo-control-plane .spec.replicas: "
        "'3' is not of type 'integer'"
    ]


def test_v1beta1_shaped_reference_is_reported(schemas):
    def v1beta1_ref(docs: list[Doc]) -> None:
        docs[0]["spec"]["infrastructureRef"] = {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "AWSCluster",
            "name": "demo",
            "namespace": "demo",
        }

    bad = edit(cluster(), "clusters/demo/cluster.yaml", v1beta1_ref)

    found = findings(bad, schemas)
    prefix = "clusters/demo/cluster.yaml: Cluster/demo .spec.infrastructureRef"
    assert f"{prefix}: 'apiGroup' is a required property" in found
    assert f"{prefix}.apiVersion: unknown field" in found
    assert f"{prefix}.namespace: unknown field" in found


def test_v1beta1_map_extra_args_are_reported(schemas):
    def map_args(docs: list[Doc]) -> None:
        docs[0]["spec"]["kubeadmConfigSpec"]["clusterConfiguration"]["controllerManager"]["extraArgs"] = {
            "cloud-provider": "external"
        }

    bad = edit(cluster(), "clusters/demo/controlplane.yaml", map_args)

    [finding] = findings(bad, schemas)
    assert ".spec.kubeadmConfigSpec.clusterConfiguration.controllerManager.extraArgs: " in finding
    assert "is not of type 'array'" in finding


def test_a_version_that_is_not_served_is_reported(schemas):
    def old_version(docs: list[Doc]) -> None:
        docs[0]["apiVersion"] = "infrastructure.cluster.x-k8s.io/v1beta1"

    bad = edit(cluster(), "clusters/demo/awscluster.yaml", old_version)

    [finding] = findings(bad, schemas)
    assert finding.startswith("clusters/demo/awscluster.yaml: AWSCluster/demo .apiVersion: ")
    assert "not served" in finding


def test_a_kind_without_crd_in_a_known_group_is_reported(schemas):
    def unknown_kind(docs: list[Doc]) -> None:
        docs[0]["kind"] = "AWSMachine"

    bad = edit(cluster(), "clusters/demo/machinetemplates.yaml", unknown_kind)

    [finding] = findings(bad, schemas)
    assert "no CRD" in finding
    assert "AWSMachine" in finding


def test_built_in_and_flux_kinds_need_a_name(schemas):
    def drop_name(docs: list[Doc]) -> None:
        del docs[0]["metadata"]["name"]

    bad = edit(cluster(), "clusters/demo/namespace.yaml", drop_name)
    bad = edit(bad, "flux/clusters/demo.yaml", drop_name)

    found = findings(bad, schemas)
    assert "clusters/demo/namespace.yaml: Namespace/? .metadata.name: missing" in found
    assert "flux/clusters/demo.yaml: Kustomization/? .metadata.name: missing" in found


def test_a_kustomization_that_does_not_build_is_reported(schemas):
    def list_missing_file(docs: list[Doc]) -> None:
        docs[0]["resources"].append("missing.yaml")

    bad = edit(cluster(), "clusters/demo/kustomization.yaml", list_missing_file)

    [finding] = findings(bad, schemas)
    assert finding.startswith("clusters/demo: kubectl kustomize fails: ")
    assert "missing.yaml" in finding


def test_a_cluster_name_already_in_the_fleet_is_reported(schemas):
    found = findings(cluster(), schemas, [cluster(cidr="10.30.0.0/16")])

    assert found == ["clusters/demo: a cluster named 'demo' is already in the fleet"]


def test_an_object_outside_the_clusters_own_namespace_is_reported(schemas):
    ours = cluster()
    workers = {m.path: m.content for m in ours.files}["clusters/demo/workers.yaml"]
    stolen = next(d for d in yaml.safe_load_all(workers) if d["kind"] == "KubeadmConfigTemplate")

    def add_ours(docs: list[Doc]) -> None:
        docs.append(stolen)

    def rename_namespace(docs: list[Doc]) -> None:
        docs[0]["metadata"]["name"] = "demo"

    other = edit(cluster("other", "10.30.0.0/16"), "clusters/other/workers.yaml", add_ours)
    assert findings(other, schemas) == [
        "clusters/other/workers.yaml: KubeadmConfigTemplate/demo-default .metadata.namespace: "
        "must be other, the namespace cluster other owns"
    ]
    squatting = edit(cluster("other", "10.30.0.0/16"), "clusters/other/namespace.yaml", rename_namespace)
    assert findings(squatting, schemas) == [
        "clusters/other/namespace.yaml: Namespace/demo .metadata.name: cluster other may only create its own "
        "namespace, other"
    ]


def test_an_overlapping_vpc_cidr_is_reported(schemas):
    found = findings(cluster(), schemas, [cluster("other", "10.20.128.0/17")])

    assert found == [
        "clusters/demo: VPC CIDR 10.20.0.0/16 overlaps cluster 'other' (10.20.128.0/17); choose a free range"
    ]


def test_a_cluster_without_its_vpc_cidr_annotation_is_reported(schemas):
    def drop_annotations(docs: list[Doc]) -> None:
        del docs[0]["metadata"]["annotations"]

    bad = edit(cluster(), "clusters/demo/cluster.yaml", drop_annotations)

    assert findings(bad, schemas) == ["clusters/demo: the Cluster lacks a valid 'fleet.pipeline/vpc-cidr' annotation"]


def test_the_error_message_is_one_line_with_a_count(schemas):
    def two_problems(docs: list[Doc]) -> None:
        docs[0]["spec"]["replicas"] = "3"
        docs[0]["spec"]["bogus"] = True

    with pytest.raises(ManifestInvalid) as raised:
        validate(edit(cluster(), "clusters/demo/controlplane.yaml", two_problems), schemas, [])

    assert "\n" not in str(raised.value)
    assert str(raised.value).endswith("(and 1 more)")


def test_a_path_outside_the_fleet_repo_is_reported(schemas):
    ours = cluster()
    escaping = dataclasses.replace(ours, files=(*ours.files, Manifest("../outside.yaml", "a: 1\n")))

    assert "../outside.yaml: not a path inside the fleet repo" in findings(escaping, schemas)


def test_a_machine_deployment_outside_the_clusters_zones_is_reported(schemas):
    def elsewhere(docs: list[Doc]) -> None:
        docs[1]["spec"]["template"]["spec"]["failureDomain"] = "us-east-1f"

    bad = edit(cluster(), "clusters/demo/workers.yaml", elsewhere)

    assert findings(bad, schemas) == [
        "clusters/demo/workers.yaml: MachineDeployment/demo-default-a .spec.template.spec.failureDomain: "
        "us-east-1f is not one of the cluster's zones (us-east-1a,us-east-1b,us-east-1c)"
    ]


def without_role(role: str) -> Callable[[list[Doc]], None]:
    def drop(docs: list[Doc]) -> None:
        docs[:] = [d for d in docs if d.get("metadata", {}).get("labels", {}).get("fleet.pipeline/provides") != role]

    return drop


@pytest.mark.reliability("bad input", "a cluster whose add-ons lack a CNI")
def test_a_cluster_without_a_cni_is_refused(schemas, record_property):
    bad = edit(cluster(), "clusters/demo/addons.yaml", without_role("cni"))
    found = findings(bad, schemas)
    record_property("outcome", found[0])
    assert found == [
        "clusters/demo: no add-on provides a CNI, so no node becomes Ready; enable addons.cilium or add one"
    ]


@pytest.mark.reliability("bad input", "kubelets with cloud-provider external and no cloud-controller-manager add-on")
def test_an_external_cloud_provider_without_a_ccm_is_refused(schemas, record_property):
    bad = edit(cluster(), "clusters/demo/addons.yaml", without_role("cloud-controller-manager"))
    found = findings(bad, schemas)
    record_property("outcome", found[0])
    assert len(found) == 1
    assert "cloud-provider external and no add-on provides the cloud-controller-manager" in found[0]


@pytest.mark.reliability("bad input", "a cloud-controller-manager of v1.30 for Kubernetes v1.31")
def test_a_ccm_of_another_minor_is_refused(schemas, record_property):
    def older(docs: list[Doc]) -> None:
        for doc in docs:
            if doc["kind"] == "HelmRelease" and doc["metadata"]["name"] == "demo-aws-cloud-controller-manager":
                doc["spec"]["values"]["image"]["tag"] = "v1.30.7"

    found = findings(edit(cluster(), "clusters/demo/addons.yaml", older), schemas)
    record_property("outcome", found[0])
    assert found == [
        "clusters/demo/addons.yaml: HelmRelease/demo-aws-cloud-controller-manager .spec.values.image.tag: "
        "cloud-controller-manager v1.30.7 does not match Kubernetes v1.31.2; use v1.31.5, or drop the tag to "
        "follow the cluster"
    ]


def test_flux_objects_are_checked_against_their_crds(schemas):
    def typo(docs: list[Doc]) -> None:
        docs[1]["spec"]["kubeconfig"] = docs[1]["spec"].pop("kubeConfig")

    found = findings(edit(cluster(), "clusters/demo/addons.yaml", typo), schemas)
    assert found == ["clusters/demo/addons.yaml: HelmRelease/demo-cilium .spec.kubeconfig: unknown field"]


def test_machine_templates_choosing_their_image_pass_the_strict_schemas(schemas):
    spec = sample_spec()
    for image in ({"ami": {"us-east-1": "ami-0123456789abcdef0"}}, {"lookup": {"org": "258751437250"}}):
        chosen = type(spec).model_validate({**spec.model_dump(), "image": image})
        validate(render(chosen, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS), schemas, [])


def test_the_crds_cel_rules_are_judged_as_the_api_server_would(schemas):
    def both_chart_sources(docs: list[Doc]) -> None:
        release = next(d for d in docs if d["kind"] == "HelmRelease")
        release["spec"]["chartRef"] = {"kind": "OCIRepository", "name": "elsewhere"}

    def repeated_arg(docs: list[Doc]) -> None:
        kcp = next(d for d in docs if d["kind"] == "KubeadmControlPlane")
        args = kcp["spec"]["kubeadmConfigSpec"]["clusterConfiguration"]["apiServer"]["extraArgs"]
        args.append(dict(args[0]))

    found = findings(edit(cluster(), "clusters/demo/addons.yaml", both_chart_sources), schemas)
    assert found == ["clusters/demo/addons.yaml: HelmRelease/demo-cilium .spec: either chart or chartRef must be set"]
    found = findings(edit(cluster(), "clusters/demo/controlplane.yaml", repeated_arg), schemas)
    assert len(found) == 1
    assert found[0].startswith(
        "clusters/demo/controlplane.yaml: KubeadmControlPlane/demo-control-plane "
        ".spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs: "
    )


def test_a_cel_rule_that_only_the_api_server_can_judge_is_listed_not_passed(schemas):
    key = ("source.toolkit.fluxcd.io/v1", "HelmRepository")
    schema = copy.deepcopy(dict(schemas.served[key]))
    schema["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "isURL(self.url)", "message": "url must be a URL"},
        {"rule": "self.url == oldSelf.url", "message": "url is immutable"},
    ]
    patched = dataclasses.replace(schemas, served={**schemas.served, key: schema})

    unchecked = validate(cluster(), patched, [])

    assert unchecked == (
        "HelmRepository .spec: isURL(self.url) (uses isURL, which only Kubernetes' CEL library defines)",
        "HelmRepository .spec: self.url == oldSelf.url "
        "(a transition rule: it compares with the stored object, which only an update has)",
    )
    assert validate(cluster(), schemas, []) == ()
