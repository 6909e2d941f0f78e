from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import pytest

from pipeline import aws
from pipeline.errors import AwsError
from pipeline.model import AwsAccess
from tests.fixtures import free_port

CREDENTIALS = (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"))


@pytest.fixture
def access(moto_endpoint: str) -> AwsAccess:
    return AwsAccess(region="eu-west-1", endpoint=moto_endpoint, env=CREDENTIALS)


def test_state_bucket_is_created_once_versioned_encrypted_and_private(access, moto_endpoint):
    name = f"state-{uuid.uuid4().hex[:12]}"

    assert aws.ensure_state_bucket(access, name) is True
    assert aws.ensure_state_bucket(access, name) is False

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    # The local endpoint is plain HTTP, which the TLS-only policy would refuse: it gets none.
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=name)


def test_the_state_bucket_policy_refuses_every_request_without_tls():
    [statement] = aws.tls_only_policy("state")["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(statement["Resource"]) == {"arn:aws:s3:::state", "arn:aws:s3:::state/*"}


def test_caller_identity_and_zones(access):
    assert len(aws.caller_identity(access)) == 12
    zones = aws.zones(access)
    assert zones == tuple(sorted(zones))
    assert all(z.startswith("eu-west-1") for z in zones) and len(zones) >= 3


def test_describe_helpers_report_a_missing_vpc(access):
    assert aws.vpc_exists(access, "vpc-0123456789abcdef0") is False
    assert aws.subnet_ids(access, "vpc-0123456789abcdef0") == ()


def test_an_unreachable_endpoint_fails_fast_with_one_line():
    access = AwsAccess(region="us-east-1", endpoint=f"http://127.0.0.1:{free_port()}", env=CREDENTIALS)

    started = time.monotonic()
    with pytest.raises(AwsError) as caught:
        aws.caller_identity(access)

    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert message.startswith("sts:GetCallerIdentity on the current credentials failed: ")
    assert "\n" not in message


def _tags(cluster: str, kind: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": aws.CLUSTER_TAG, "Value": cluster}]}]


def _network_of(ec2: Any, cluster: str, cidr: str) -> dict[str, str]:
    """A VPC with a subnet, route table, internet and NAT gateway, all tagged for `cluster` as the stack tags them."""
    vpc = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=_tags(cluster, "vpc"))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock=cidr.replace("/16", "/20"), TagSpecifications=_tags(cluster, "subnet")
    )
    subnet_id = subnet["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc, TagSpecifications=_tags(cluster, "route-table"))["RouteTable"]
    ec2.associate_route_table(RouteTableId=table["RouteTableId"], SubnetId=subnet_id)
    gateway = ec2.create_internet_gateway(TagSpecifications=_tags(cluster, "internet-gateway"))["InternetGateway"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc)
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=_tags(cluster, "elastic-ip"))["AllocationId"]
    nat = ec2.create_nat_gateway(
        SubnetId=subnet_id, AllocationId=address, TagSpecifications=_tags(cluster, "natgateway")
    )
    return {
        "aws_vpc": vpc,
        "aws_subnet": subnet_id,
        "aws_route_table": table["RouteTableId"],
        "aws_internet_gateway": gateway["InternetGatewayId"],
        "aws_eip": address,
        "aws_nat_gateway": nat["NatGateway"]["NatGatewayId"],
    }


def test_a_clusters_tagged_resources_are_found_and_deleted_and_no_other_clusters(access, moto_endpoint):
    ec2 = boto3.client(
        "ec2",
        endpoint_url=moto_endpoint,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    mine = f"orph-{uuid.uuid4().hex[:8]}"
    other = f"keep-{uuid.uuid4().hex[:8]}"
    built = _network_of(ec2, mine, "10.61.0.0/16")
    kept = _network_of(ec2, other, "10.62.0.0/16")

    found = aws.tagged_resources(access, mine)
    assert {kind: ids for kind, ids in found.items() if ids} == {kind: (i,) for kind, i in built.items()}

    aws.delete_resources(access, found)

    assert not any(aws.tagged_resources(access, mine).values())
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [built["aws_vpc"]]}])["Vpcs"] == []
    assert {kind: ids for kind, ids in aws.tagged_resources(access, other).items() if ids} == {
        kind: (i,) for kind, i in kept.items()
    }
