from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline import config, local_endpoint, machine_image, network, node_iam, terraform
from pipeline.errors import BadInput, SpecError, StateLocked
from pipeline.spec import BastionSpec, ClusterSpec, ControlPlaneSpec, NetworkSpec, WorkerPool

REGION = "us-east-1"


def _spec(name: str, zones: int = 2, bastion: bool = True) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        region=REGION,
        kubernetes_version="v1.31.2",
        network=NetworkSpec(cidr="10.20.0.0/16", zones=zones, nat_gateways="single", endpoints=("sts", "s3")),
        bastion=BastionSpec(enabled=bastion, allowed_cidrs=("203.0.113.0/24",), instance_type="t3.micro"),
        control_plane=ControlPlaneSpec(replicas=1, instance_type="m6i.large"),
        workers=(WorkerPool(name="default", replicas=1, instance_type="m6i.large"),),
        ssh_key_name="",
        tags={"team": "platform"},
    )


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str) -> config.Settings:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PIPELINE_AWS_ENDPOINT", endpoint)
    monkeypatch.setenv("PIPELINE_STATE_BUCKET", f"tfstate-{uuid.uuid4().hex[:12]}")
    settings = config.load_settings(os.environ, tmp_path)
    # The account's roles, which every cluster's stack names, come first, as in a run.
    node_iam.ensure(settings)
    return settings


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.mark.reliability("bad input", "a network of 3 zones in us-west-1 (2 zones), asked of the AWS endpoint")
def test_more_zones_than_the_region_has_is_a_spec_error(tmp_path, monkeypatch, moto_endpoint, record_property):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    access = local_endpoint.ensure(settings, "us-west-1")

    name = _unique("zones")
    with pytest.raises(SpecError) as caught:
        network.provision(_spec(name, zones=3).model_copy(update={"region": "us-west-1"}), access, settings)
    record_property("outcome", f"SpecError (exit {caught.value.exit_code}): {caught.value}".replace(name, "<name>"))

    assert caught.value.field == "network.zones"
    assert "us-west-1 has 2 available" in str(caught.value)


@pytest.mark.reliability("bad input", "a pool in us-east-1c of a network of 2 zones, asked of the AWS endpoint")
def test_a_pool_zone_outside_the_network_is_refused_before_terraform(
    tmp_path, monkeypatch, moto_endpoint, record_property
):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    access = local_endpoint.ensure(settings, REGION)
    name = _unique("poolzone")
    spec = _spec(name, zones=2)
    pool = spec.workers[0].model_copy(update={"zones": ("us-east-1a", "us-east-1c")})

    with pytest.raises(SpecError) as caught:
        network.provision(spec.model_copy(update={"workers": (pool,)}), access, settings)
    record_property("outcome", f"SpecError (exit {caught.value.exit_code}): {caught.value}")

    assert caught.value.field == "workers[0].zones[1]"
    assert "us-east-1c is not one of the network's zones (us-east-1a, us-east-1b)" in str(caught.value)
    assert not settings.terraform_work_dir(name).exists()
    assert not settings.terraform_work_dir(name).exists()


@pytest.mark.reliability(
    "bad input", "the state bucket configured differs from the one the cluster's state is recorded in"
)
def test_a_cluster_whose_state_lives_elsewhere_is_refused_before_terraform(
    tmp_path, monkeypatch, moto_endpoint, record_property
):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    access = local_endpoint.ensure(settings, REGION)
    name = _unique("moved")
    work = settings.terraform_work_dir(name)
    work.mkdir(parents=True)
    record = {"account": "123456789012", "bucket": "the-old-bucket", "key": network.state_key(name)}
    (work / network.STATE_LOCATION).write_text(json.dumps(record))

    with pytest.raises(BadInput, match=r"s3://the-old-bucket/clusters/.*terraform init -migrate-state") as caught:
        network.provision(_spec(name), access, settings)
    shown = f"{type(caught.value).__name__} (exit {caught.value.exit_code}): {caught.value}"
    record_property("outcome", shown.replace(name, "<name>").replace(str(settings.state_bucket), "<bucket>"))

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert settings.state_bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert sorted(p.name for p in work.iterdir()) == [network.STATE_LOCATION]


@pytest.mark.reliability("bad input", "PIPELINE_STATE_BUCKET=Bad_Name, not a valid S3 bucket name")
def test_state_bucket_name_is_derived_and_checked(tmp_path, monkeypatch, moto_endpoint, record_property):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    derived = network.state_bucket(dataclasses.replace(settings, state_bucket=None), "123456789012", REGION)
    assert derived == "fleet-pipeline-tfstate-123456789012-us-east-1"

    with pytest.raises(BadInput, match="PIPELINE_STATE_BUCKET") as caught:
        network.state_bucket(dataclasses.replace(settings, state_bucket="Bad_Name"), "1", REGION)
    record_property("outcome", f"{type(caught.value).__name__} (exit {caught.value.exit_code}): {caught.value}")


@pytest.mark.slow
def test_the_network_is_built_rerun_guarded_and_destroyed(tmp_path, monkeypatch, moto_endpoint):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    access = local_endpoint.ensure(settings, REGION)
    name = _unique("net")
    spec = _spec(name)
    lines: list[str] = []

    first = network.provision(spec, access, settings, on_line=lines.append)

    assert first.changes.add > 0 and first.changes.destroy == 0
    assert any("Apply complete!" in line for line in lines)
    out = first.outputs
    assert (out.region, out.vpc_cidr) == (REGION, "10.20.0.0/16")
    assert [(s.public, s.zone, s.cidr) for s in out.subnets] == [
        (False, "us-east-1a", "10.20.128.0/20"),
        (False, "us-east-1b", "10.20.144.0/20"),
        (True, "us-east-1a", "10.20.0.0/20"),
        (True, "us-east-1b", "10.20.16.0/20"),
    ]
    assert len(out.nat_gateway_ids) == 1
    assert [service for service, _ in out.endpoint_ids] == ["s3", "sts"]
    assert out.bastion is not None

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    ec2 = session.client("ec2", endpoint_url=moto_endpoint)
    s3 = session.client("s3", endpoint_url=moto_endpoint)

    vpc = ec2.describe_vpcs(VpcIds=[out.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.20.0.0/16"
    assert {"Key": f"kubernetes.io/cluster/{name}", "Value": "shared"} in vpc["Tags"]
    assert {"Key": "team", "Value": "platform"} in vpc["Tags"]
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=[s.id for s in out.subnets])["Subnets"]}
    for subnet in out.subnets:
        seen = subnets[subnet.id]
        tags = {t["Key"]: t["Value"] for t in seen["Tags"]}
        assert (seen["CidrBlock"], seen["AvailabilityZone"], seen["VpcId"]) == (subnet.cidr, subnet.zone, out.vpc_id)
        assert tags[f"kubernetes.io/cluster/{name}"] == "shared"
        role = "kubernetes.io/role/elb" if subnet.public else "kubernetes.io/role/internal-elb"
        assert tags[role] == "1"
    endpoints = ec2.describe_vpc_endpoints(VpcEndpointIds=[i for _, i in out.endpoint_ids])["VpcEndpoints"]
    assert {e["ServiceName"]: e["VpcEndpointType"] for e in endpoints} == {
        "com.amazonaws.us-east-1.s3": "Gateway",
        "com.amazonaws.us-east-1.sts": "Interface",
    }

    group = ec2.describe_security_groups(GroupIds=[out.bastion.security_group_id])["SecurityGroups"][0]
    assert [(p.get("FromPort"), [r["CidrIp"] for r in p["IpRanges"]]) for p in group["IpPermissions"]] == [
        (22, ["203.0.113.0/24"])
    ]
    instance = ec2.describe_instances(InstanceIds=[out.bastion.instance_id])["Reservations"][0]["Instances"][0]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["SubnetId"] in {s.id for s in out.subnets if s.public}
    volume_id = instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Encrypted"] is True

    bucket = settings.state_bucket
    assert bucket is not None
    state = json.loads(s3.get_object(Bucket=bucket, Key=f"clusters/{name}/network.tfstate")["Body"].read())
    assert state["serial"] == first.state_serial
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())

    # A run that died holding the lock a moment ago: the error names the command, and that command works.
    lock = {
        "ID": str(uuid.uuid4()),
        "Operation": "OperationTypeApply",
        "Who": "crashed@ci",
        "Version": "1.11.4",
        "Created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    s3.put_object(Bucket=bucket, Key=f"clusters/{name}/network.tfstate.tflock", Body=json.dumps(lock))
    with pytest.raises(StateLocked) as caught:
        network.provision(spec, access, settings)
    release = str(caught.value).split("release it with: ", 1)[1]
    assert release == f"python -m pipeline unlock {name} --region {REGION} --lock {lock['ID']} --force"
    # Run as printed, with no terminal to answer a prompt; `python` is the one the pipeline is installed in.
    words = shlex.split(release)
    subprocess.run(
        [sys.executable, *words[1:]],
        check=True,
        env=os.environ,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )

    lines.clear()
    second = network.provision(spec, access, settings, on_line=lines.append)

    assert second.changes.empty
    assert not any("Apply complete!" in line for line in lines)
    assert second.outputs == first.outputs
    assert second.state_serial == first.state_serial

    other = terraform.workspace(settings, _unique("other"), network.STACK, dict(access.env))
    terraform.init(other, network.backend_config(bucket, network.state_key("other"), access))
    provider = other.data_dir / "providers" / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0"
    # Linked to the shared cache, or straight to an unpacked mirror, never copied per cluster.
    assert (provider / "linux_amd64").is_symlink()
    assert not (provider / "linux_amd64").resolve().is_relative_to(other.work_dir)

    work = settings.terraform_work_dir(name)
    before = _versions(s3, bucket)

    # A changed CIDR would replace the VPC under a running cluster: refused, nothing applied.
    with pytest.raises(BadInput) as refused:
        network.provision(_with_network(spec, cidr="10.30.0.0/16"), access, settings)
    message = str(refused.value)
    assert message.startswith("network.cidr changed (10.20.0.0/16 -> 10.30.0.0/16): Terraform would replace")
    assert "module.network.aws_vpc.this" in message and "--force" in message
    state_key = network.state_key(name)
    # The refused run took and released the lock; the state itself was not written.
    assert [v for v in _versions(s3, bucket) if v[0] == state_key] == [v for v in before if v[0] == state_key]
    assert ec2.describe_vpcs(VpcIds=[out.vpc_id])["Vpcs"][0]["CidrBlock"] == "10.20.0.0/16"

    assert network.destroy(name, REGION, access, settings) is True
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [out.vpc_id]}])["Vpcs"] == []
    assert [key for key, _ in _versions(s3, bucket) if key.startswith(f"clusters/{name}/")] == []
    assert not work.exists()
    assert network.destroy(name, REGION, access, settings) is False


def _with_network(spec: ClusterSpec, **changes: Any) -> ClusterSpec:
    return spec.model_copy(update={"network": spec.network.model_copy(update=changes)})


def _versions(s3, bucket: str) -> list[tuple[str, str]]:
    """Every object version and delete marker in the bucket: a write of any kind changes this."""
    listed = s3.list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])])


def _ec2(endpoint: str) -> Any:
    return boto3.client(
        "ec2", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )


def _amazon_image(endpoint: str, architecture: str) -> str:
    """One of the Amazon images the moto server publishes, of that architecture."""
    found = _ec2(endpoint).describe_images(
        Owners=["amazon"], Filters=[{"Name": "architecture", "Values": [architecture]}]
    )["Images"]
    return str(found[0]["ImageId"])


def _with_image(spec: ClusterSpec, image: dict[str, Any]) -> ClusterSpec:
    return ClusterSpec.model_validate({**spec.model_dump(), "image": image})


@pytest.mark.reliability("bad input", "image.ami naming an AMI that does not exist, asked of the AWS endpoint")
def test_an_ami_that_does_not_exist_is_refused_before_terraform(tmp_path, monkeypatch, moto_endpoint, record_property):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    access = local_endpoint.ensure(settings, REGION)
    name = _unique("noami")
    spec = _with_image(_spec(name), {"ami": {REGION: "ami-0123456789abcdef0"}})

    with pytest.raises(SpecError) as caught:
        network.provision(spec, access, settings)
    record_property("outcome", f"SpecError (exit {caught.value.exit_code}): {caught.value}")

    assert caught.value.field == "image.ami.us-east-1"
    assert "ami-0123456789abcdef0 does not exist in us-east-1" in str(caught.value)
    assert not settings.terraform_work_dir(name).exists()


def test_an_image_of_another_architecture_than_a_pool_is_refused(tmp_path, monkeypatch, moto_endpoint):
    settings = _settings(tmp_path, monkeypatch, moto_endpoint)
    access = local_endpoint.ensure(settings, REGION)
    arm, x86 = _amazon_image(moto_endpoint, "arm64"), _amazon_image(moto_endpoint, "x86_64")

    with pytest.raises(SpecError) as caught:
        network.preflight(_with_image(_spec("arch"), {"ami": {REGION: arm}}), access)

    assert caught.value.field == f"image.ami.{REGION}"
    assert f"{arm} is arm64, and controlPlane.instanceType m6i.large runs x86_64" in str(caught.value)
    assert network.preflight(_with_image(_spec("arch"), {"ami": {REGION: x86}}), access) == ("us-east-1a", "us-east-1b")


def test_a_lookup_finds_the_newest_image_of_its_name_or_is_refused(moto_endpoint):
    access = local_endpoint.access(local_endpoint.Endpoint(moto_endpoint, None, running=True), REGION)
    owner, pattern = "137112412989", "{{.BaseOS}}-ami-hvm-*-x86_64-gp2"
    published = _ec2(moto_endpoint).describe_images(
        Owners=[owner], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*-x86_64-gp2"]}]
    )["Images"]
    newest = max(published, key=lambda image: (image["CreationDate"], image["ImageId"]))
    lookup = {"lookup": {"org": owner, "baseOS": "amzn2", "format": pattern}}

    found = machine_image.check(_with_image(_spec("lookup"), lookup), access)

    assert len(published) > 1 and found is not None and found.id == newest["ImageId"]
    with pytest.raises(SpecError) as caught:
        machine_image.check(_with_image(_spec("lookup"), {"lookup": {"org": owner, "baseOS": "none"}}), access)
    assert caught.value.field == "image.lookup"
    assert f"{owner} publishes no image named capa-ami-none-?1.31.2-* in us-east-1" in str(caught.value)


def test_an_instance_type_the_region_does_not_offer_is_refused(moto_endpoint):
    access = local_endpoint.access(local_endpoint.Endpoint(moto_endpoint, None, running=True), REGION)
    spec = _with_image(_spec("types"), {"ami": {REGION: _amazon_image(moto_endpoint, "x86_64")}})
    pool = spec.workers[0].model_copy(update={"instance_type": "zz9.large"})

    with pytest.raises(SpecError) as caught:
        machine_image.check(spec.model_copy(update={"workers": (pool,)}), access)

    assert caught.value.field == "workers[0].instanceType"
    assert "zz9.large is not an instance type us-east-1 offers" in str(caught.value)
