"""A cluster the reconciler can bring to Ready: what main holds after the pipeline, read as Flux and CAPI would."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pytest_bdd import given, parsers, scenarios, then, when

from features.conftest import STATE_BUCKET, World, ec2, iam, s3, spec_path
from pipeline import addons, aws, fleet, network
from pipeline.errors import EXIT_BAD_INPUT

scenarios("ready.feature")

pytestmark = pytest.mark.slow


def _docs(world: World, ref: str, path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(world.git("show", f"{ref}:{path}")) if d]


def _kind(world: World, ref: str, name: str, kind: str) -> list[dict[str, Any]]:
    files = world.git("ls-tree", "-r", "--name-only", ref, f"clusters/{name}/").split()
    return [d for path in files if path.endswith(".yaml") for d in _docs(world, ref, path) if d["kind"] == kind]


def _spec(world: World, name: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(spec_path(world, name).read_text())
    return found


@given(
    parsers.parse(
        'a spec for "{name}" with {zones:d} zones, a pool "{pool}" of {size:d} workers and an AMI of the AWS endpoint'
    )
)
def ready_spec(world: World, name: str, zones: int, pool: str, size: int) -> None:
    images = ec2(world).describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])[
        "Images"
    ]
    spec = {
        "name": name,
        "network": {"zones": zones, "endpoints": ["s3"]},
        "bastion": {"enabled": False},
        "apiServer": {"allowedCIDRs": ["203.0.113.0/24"]},
        "networkPolicies": {"namespaces": ["shop"]},
        "workers": [{"name": pool, "replicas": size, "instanceType": "m6i.large"}],
        "image": {"ami": {"us-east-1": images[0]["ImageId"]}},
    }
    spec_path(world, name).write_text(yaml.safe_dump(spec, sort_keys=False))


@when(parsers.parse('the spec for "{name}" asks for Kubernetes "{version}"'))
def asks_for_version(world: World, name: str, version: str) -> None:
    spec = _spec(world, name) | {"kubernetesVersion": version}
    spec_path(world, name).write_text(yaml.safe_dump(spec, sort_keys=False))
    world.refs_before = world.refs()


@then(
    parsers.parse('main holds {count:d} MachineDeployments of pool "{pool}" with failure domains and {split} replicas')
)
def spread(world: World, count: int, pool: str, split: str) -> None:
    deployments = sorted(_kind(world, "main", "ready", "MachineDeployment"), key=lambda d: d["metadata"]["name"])
    zones = sorted({s["AvailabilityZone"] for s in ec2(world).describe_subnets()["Subnets"]})
    assert [d["metadata"]["name"] for d in deployments] == [f"ready-{pool}-{z[-1]}" for z in zones[:count]]
    assert [d["spec"]["template"]["spec"]["failureDomain"] for d in deployments] == zones[:count]
    assert [d["spec"]["replicas"] for d in deployments] == [int(n) for n in split.split("/")]


@then(parsers.parse('main holds MachineHealthChecks for the control plane and pool "{pool}"'))
def health_checks(world: World, pool: str) -> None:
    checks = {c["metadata"]["name"]: c["spec"]["selector"] for c in _kind(world, "main", "ready", "MachineHealthCheck")}
    assert set(checks) == {"ready-control-plane", f"ready-{pool}"}
    assert "cluster.x-k8s.io/control-plane" in checks["ready-control-plane"]["matchLabels"]
    [deployments] = checks[f"ready-{pool}"]["matchExpressions"]
    assert sorted(deployments["values"]) == [f"ready-{pool}-{zone}" for zone in "abc"]


@then(parsers.parse('the add-ons go to the workload cluster through "{secret}" in the order CNI, CCM, CSI'))
def addons_in_order(world: World, secret: str) -> None:
    releases = _kind(world, "main", "ready", "HelmRelease")
    by_role = {r["metadata"]["labels"][addons.ROLE_LABEL]: r for r in releases}
    # What makes it Ready, then the audit log shipper of the security baseline.
    assert set(by_role) == {*addons.ORDER, "audit-logs"}
    assert all(r["spec"]["kubeConfig"]["secretRef"] == {"name": secret, "key": "value"} for r in releases)
    cni, ccm, csi = (by_role[role]["metadata"]["name"] for role in addons.ORDER)
    assert "dependsOn" not in by_role["cni"]["spec"]
    assert by_role["cloud-controller-manager"]["spec"]["dependsOn"] == [{"name": cni}]
    assert by_role["csi"]["spec"]["dependsOn"] == [{"name": ccm}]
    assert csi == "ready-aws-ebs-csi-driver"
    assert by_role["audit-logs"]["spec"]["dependsOn"] == [{"name": csi}]


def _ccm_tag(world: World, ref: str) -> str:
    ccm = next(
        r
        for r in _kind(world, ref, "ready", "HelmRelease")
        if r["metadata"]["labels"][addons.ROLE_LABEL] == "cloud-controller-manager"
    )
    return str(ccm["spec"]["values"]["image"]["tag"])


@then(parsers.parse("the cloud-controller-manager runs the image of Kubernetes v1.{minor:d}"))
def ccm_on_main(world: World, minor: int) -> None:
    assert _ccm_tag(world, "main") == addons.CCM_IMAGES[minor]
    assert _ccm_tag(world, "main").startswith(f"v1.{minor}.")


@then(parsers.parse('the cloud-controller-manager on "{ref}" runs the image of Kubernetes v1.{minor:d}'))
def ccm_on(world: World, ref: str, minor: int) -> None:
    assert _ccm_tag(world, ref) == addons.CCM_IMAGES[minor]


@then("every AWSMachineTemplate names an instance profile that exists on the AWS endpoint")
def profiles_exist(world: World) -> None:
    templates = _kind(world, "main", "ready", "AWSMachineTemplate")
    profiles = iam(world)
    assert len(templates) == 2
    for template in templates:
        profile = template["spec"]["template"]["spec"]["iamInstanceProfile"]
        found = profiles.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]
        assert [role["RoleName"] for role in found["Roles"]] == [profile]


@then("the fleet holds the Provider and Alert that post each cluster's health as commit statuses")
def health_reported(world: World) -> None:
    provider, alert = _docs(world, "main", fleet.HEALTH_FILE)
    assert (provider["kind"], provider["spec"]["type"]) == ("Provider", "github")
    assert (alert["kind"], alert["spec"]["providerRef"]["name"]) == ("Alert", provider["metadata"]["name"])
    assert {"kind": "Kustomization", "name": "*"} in alert["spec"]["eventSources"]
    assert "health.yaml" in world.git("show", f"main:{fleet.SYSTEM_KUSTOMIZATION}")
    [flux] = _docs(world, "main", "flux/clusters/ready.yaml")
    checked = {(c["kind"], c["name"]) for c in flux["spec"]["healthChecks"]}
    assert ("Cluster", "ready") in checked and ("HelmRelease", "ready-cilium") in checked
    assert flux["spec"]["healthCheckExprs"][0]["kind"] == "Cluster"


@then("the cluster keeps the security baseline, on the AWS endpoint and in its manifests on main")
def security_baseline(world: World) -> None:
    vpc = _kind(world, "main", "ready", "AWSCluster")[0]["spec"]["network"]["vpc"]["id"]
    endpoint = ec2(world)
    flows = endpoint.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]
    assert [f["TrafficType"] for f in flows] == ["ALL"]
    [default] = endpoint.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert (default["IpPermissions"], default["IpPermissionsEgress"]) == ([], [])
    # The state this cluster's network lives in is served over TLS only, and was written through that policy.
    bucket = s3(world)
    assert json.loads(bucket.get_bucket_policy(Bucket=STATE_BUCKET)["Policy"]) == aws.tls_only_policy(STATE_BUCKET)
    assert bucket.head_object(Bucket=STATE_BUCKET, Key=network.state_key("ready"))["ContentLength"] > 0
    for template in _kind(world, "main", "ready", "AWSMachineTemplate"):
        machine = template["spec"]["template"]["spec"]
        assert machine["instanceMetadataOptions"]["httpTokens"] == "required"
        assert machine["instanceMetadataOptions"]["httpPutResponseHopLimit"] == 1
        assert machine["rootVolume"]["encrypted"] is True
    [awscluster] = _kind(world, "main", "ready", "AWSCluster")
    [ingress] = awscluster["spec"]["controlPlaneLoadBalancer"]["ingressRules"]
    # The local fleet's management cluster (fleet.yaml) and the spec's own CIDRs, nothing else.
    assert ingress["cidrBlocks"] == ["127.0.0.1/32", "203.0.113.0/24"]
    [kcp] = _kind(world, "main", "ready", "KubeadmControlPlane")
    config = kcp["spec"]["kubeadmConfigSpec"]
    written = {f["path"]: yaml.safe_load(f["content"]) for f in config["files"]}
    args = {a["name"]: a["value"] for a in config["clusterConfiguration"]["apiServer"]["extraArgs"]}
    assert written[args["admission-control-config-file"]]["plugins"][0]["name"] == "PodSecurity"
    [secrets] = written[args["encryption-provider-config"]]["resources"]
    assert [list(provider) for provider in secrets["providers"]] == [["kms"]]
    policies = [
        d for d in _docs(world, "main", "clusters/ready/baseline/networkpolicies.yaml") if d["kind"] == "NetworkPolicy"
    ]
    denied = {p["metadata"]["namespace"] for p in policies if p["metadata"]["name"] == "default-deny"}
    assert denied == {"default", "shop"}


@then("verify passes main: every folder builds with kubectl kustomize, strict schemas and CEL rules")
def verify_main(world: World) -> None:
    result = world.pipeline("verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fleet verified: main" in result.stdout


@then(parsers.parse('it exits 2 before Terraform runs, naming "{field}", and the fleet\'s branches are as they were'))
def refused_before_terraform(world: World, field: str) -> None:
    assert world.last is not None
    assert world.last.returncode == EXIT_BAD_INPUT, world.last.stderr
    lines = world.last.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: spec field '{field}'"), lines
    assert "==> network" not in world.last.stderr
    assert world.refs() == world.refs_before


@then(parsers.parse('the new commit on "{branch}" changes only {names}'))
def changed_only(world: World, branch: str, names: str) -> None:
    wanted = sorted(n.strip() for n in names.replace(" and ", ", ").split(","))
    changed = world.git("diff", "--name-only", f"main..{branch}").split()
    assert sorted(path.removeprefix("clusters/ready/") for path in changed) == wanted
