from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.errors import AwsError
from pipeline.model import AwsAccess
from tests.fixtures import free_port, moto_server

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
    # The local endpoint serves TLS, so the bucket refuses plain HTTP there as on AWS.
    assert json.loads(s3.get_bucket_policy(Bucket=name)["Policy"]) == aws.tls_only_policy(name)


def test_the_state_bucket_refuses_every_request_without_tls_and_serves_it_over_tls(access, moto_endpoint):
    """The local endpoint's server evaluates the policy's one condition as AWS does: by the transport."""
    name = f"state-{uuid.uuid4().hex[:12]}"
    aws.ensure_state_bucket(access, name)
    [statement] = aws.tls_only_policy(name)["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(statement["Resource"]) == {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"}

    over_tls = _client(moto_endpoint, "s3")
    over_tls.put_object(Bucket=name, Key="state", Body=b"{}")
    assert over_tls.get_object(Bucket=name, Key="state")["Body"].read() == b"{}"

    with moto_server(None) as plain_url:
        plain = _client(plain_url, "s3")
        plain.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        plain.put_object(Bucket=name, Key="state", Body=b"{}")
        plain.put_bucket_policy(Bucket=name, Policy=json.dumps(aws.tls_only_policy(name)))
        with pytest.raises(ClientError) as denied:
            plain.get_object(Bucket=name, Key="state")
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as denied:
            plain.put_object(Bucket=name, Key="state", Body=b"[]")
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


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


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _named_of(endpoint: str, cluster: str, vpc: str) -> dict[str, str]:
    """What the stack names after a cluster, made as a killed apply leaves it: in the account, tagged, in no state."""
    names = aws.named_after(cluster)
    tags = {aws.CLUSTER_TAG: cluster}
    kms, logs, iam = (_client(endpoint, service) for service in ("kms", "logs", "iam"))
    key = kms.create_key(Tags=[{"TagKey": aws.CLUSTER_TAG, "TagValue": cluster}])["KeyMetadata"]
    [alias] = names["aws_kms_alias"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    group = names["aws_cloudwatch_log_group"][1]
    logs.create_log_group(logGroupName=group, kmsKeyId=key["Arn"], tags=tags)
    role = f"{cluster}-vpc-flow-logs"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}", Tags=[{"Key": aws.CLUSTER_TAG, "Value": cluster}])
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=role, PolicyName="deliver-to-its-log-group", PolicyDocument=json.dumps(allow))
    [profile] = names["aws_iam_instance_profile"]
    iam.create_instance_profile(InstanceProfileName=profile, Tags=[{"Key": aws.CLUSTER_TAG, "Value": cluster}])
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
    ec2 = _client(endpoint, "ec2")
    flow = ec2.create_flow_logs(
        ResourceIds=[vpc],
        ResourceType="VPC",
        TrafficType="ALL",
        LogGroupName=group,
        DeliverLogsPermissionArn=iam.get_role(RoleName=role)["Role"]["Arn"],
        TagSpecifications=_tags(cluster, "vpc-flow-log"),
    )["FlowLogIds"][0]
    return {
        "aws_kms_alias": alias,
        "aws_kms_key": key["KeyId"],
        "aws_cloudwatch_log_group": group,
        "aws_iam_role": role,
        "aws_iam_instance_profile": profile,
        "aws_flow_log": flow,
    }


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

    built |= _named_of(moto_endpoint, mine, built["aws_vpc"])
    kept |= _named_of(moto_endpoint, other, kept["aws_vpc"])
    untagged = _client(moto_endpoint, "iam").create_role(RoleName=f"{mine}-bastion-ssm", AssumeRolePolicyDocument="{}")

    found = aws.tagged_resources(access, mine)
    assert {kind: ids for kind, ids in found.items() if ids} == {kind: (i,) for kind, i in built.items()}

    aws.delete_resources(access, found)

    assert not any(aws.tagged_resources(access, mine).values())
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [built["aws_vpc"]]}])["Vpcs"] == []
    kms = _client(moto_endpoint, "kms")
    assert kms.describe_key(KeyId=built["aws_kms_key"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    # A role of that name without the cluster's tag is someone else's: found by name, never taken.
    iam = _client(moto_endpoint, "iam")
    assert iam.get_role(RoleName=untagged["Role"]["RoleName"])["Role"]["RoleName"] == f"{mine}-bastion-ssm"
    assert {kind: ids for kind, ids in aws.tagged_resources(access, other).items() if ids} == {
        kind: (i,) for kind, i in kept.items()
    }
