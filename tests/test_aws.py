from __future__ import annotations

import time
import uuid

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
