"""What Terraform does not do: the state bucket and pre-flight checks, through boto3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from pipeline.errors import AwsError
from pipeline.model import AwsAccess

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_sts import STSClient

# Bounded: an unreachable endpoint must fail within seconds, a throttled call retries a little.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=3,
    read_timeout=30,
)
_MISSING_BUCKET = ("404", "NoSuchBucket", "NotFound")


def caller_identity(access: AwsAccess) -> str:
    """The account id the credentials act in."""
    with _translated("sts:GetCallerIdentity", "the current credentials", "check AWS credentials"):
        return _client(access, "sts").get_caller_identity()["Account"]


def zones(access: AwsAccess) -> tuple[str, ...]:
    """The region's available zones (no local or wavelength zones), sorted by name."""
    with _translated("ec2:DescribeAvailabilityZones", access.region, "check the region name"):
        found = _client(access, "ec2").describe_availability_zones()["AvailabilityZones"]
    return tuple(
        sorted(
            z["ZoneName"]
            for z in found
            if z.get("State") == "available" and z.get("ZoneType", "availability-zone") == "availability-zone"
        )
    )


def ensure_state_bucket(access: AwsAccess, name: str) -> bool:
    """Create the bucket if missing; (re)assert versioning, encryption and no public access.

    Returns whether it was created. Safe to call on every run.
    """
    s3 = _client(access, "s3")
    created = False
    if not _bucket_exists(s3, name):
        with _translated("s3:CreateBucket", name, "choose another PIPELINE_STATE_BUCKET"):
            created = _create_bucket(s3, name, access.region)
    with _translated("s3:PutBucketVersioning", name, "allow s3:PutBucketVersioning on the bucket"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    with _translated("s3:PutBucketEncryption", name, "allow s3:PutEncryptionConfiguration on the bucket"):
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    with _translated("s3:PutPublicAccessBlock", name, "allow s3:PutBucketPublicAccessBlock on the bucket"):
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    return created


def vpc_exists(access: AwsAccess, vpc_id: str) -> bool:
    with _translated("ec2:DescribeVpcs", vpc_id, "check AWS credentials and region"):
        try:
            return bool(_client(access, "ec2").describe_vpcs(VpcIds=[vpc_id])["Vpcs"])
        except ClientError as e:
            if _code(e) == "InvalidVpcID.NotFound":
                return False
            raise


def subnet_ids(access: AwsAccess, vpc_id: str) -> tuple[str, ...]:
    with _translated("ec2:DescribeSubnets", vpc_id, "check AWS credentials and region"):
        found = _client(access, "ec2").describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return tuple(sorted(s["SubnetId"] for s in found["Subnets"]))


def state_serial(access: AwsAccess, bucket: str, key: str) -> int | None:
    """The serial of the Terraform state object s3://bucket/key, read without Terraform; None when absent."""
    where = f"s3://{bucket}/{key}"
    with _translated("s3:GetObject", where, "allow s3:GetObject on the state bucket"):
        try:
            body = _client(access, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if _code(e) in (*_MISSING_BUCKET, "NoSuchKey"):
                return None
            raise
    try:
        serial = json.loads(body).get("serial")
    except (ValueError, AttributeError):
        serial = None
    # bool is an int to Python, never to Terraform.
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise AwsError(f"{where} is not Terraform state (no integer 'serial'); check PIPELINE_STATE_BUCKET")
    return serial


def state_exists(access: AwsAccess, bucket: str, key: str) -> bool:
    """Whether s3://bucket/key exists; a missing bucket counts as no state, and nothing is created."""
    with _translated("s3:HeadObject", f"s3://{bucket}/{key}", "allow s3:GetObject on the state bucket"):
        try:
            _client(access, "s3").head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if _code(e) in (*_MISSING_BUCKET, "NoSuchKey"):
                return False
            raise
    return True


def delete_state(access: AwsAccess, bucket: str, key: str) -> int:
    """Delete every version and delete marker of exactly `key`, so the state is gone, not hidden.

    A plain delete in a versioned bucket only adds a marker. Returns how many were deleted.
    """
    s3 = _client(access, "s3")
    where = f"s3://{bucket}/{key}"
    with _translated("s3:ListObjectVersions", where, "allow s3:ListBucketVersions on the state bucket"):
        found: list[ObjectIdentifierTypeDef] = [
            {"Key": key, "VersionId": item["VersionId"]}
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
            for item in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
            if item["Key"] == key  # the prefix also matches the lock file beside the state
        ]
    with _translated("s3:DeleteObjectVersion", where, "allow s3:DeleteObjectVersion on the state bucket"):
        for start in range(0, len(found), 1000):  # DeleteObjects takes at most 1000 keys
            batch = found[start : start + 1000]
            errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors")
            if errors:
                first = errors[0]
                raise AwsError(
                    f"s3:DeleteObjectVersion on {where} failed for {len(errors)} versions: "
                    f"{first.get('Code')}: {first.get('Message')}; allow s3:DeleteObjectVersion and run it again"
                )
    return len(found)


def _bucket_exists(s3: S3Client, name: str) -> bool:
    with _translated("s3:HeadBucket", name, "choose another PIPELINE_STATE_BUCKET or get access to it"):
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as e:
            if _code(e) in _MISSING_BUCKET:
                return False
            raise
    return True


def _create_bucket(s3: S3Client, name: str, region: str) -> bool:
    try:
        # us-east-1 is the one region that rejects its own name as a location constraint.
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    except ClientError as e:
        if _code(e) == "BucketAlreadyOwnedByYou":
            return False
        raise
    return True


@overload
def _client(access: AwsAccess, service: Literal["s3"]) -> S3Client: ...
@overload
def _client(access: AwsAccess, service: Literal["ec2"]) -> EC2Client: ...
@overload
def _client(access: AwsAccess, service: Literal["sts"]) -> STSClient: ...
def _client(access: AwsAccess, service: str) -> Any:
    env = dict(access.env)
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=access.region,
    )
    config = _CONFIG
    if access.endpoint is not None:
        # Local endpoints serve every bucket under one host name.
        config = config.merge(Config(s3={"addressing_style": "path"}))
    return session.client(service, endpoint_url=access.endpoint, config=config)  # type: ignore[call-overload]


@contextmanager
def _translated(call: str, resource: str, fix: str) -> Iterator[None]:
    try:
        yield
    except NoCredentialsError:
        raise AwsError(
            f"{call} on {resource}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID"
        ) from None
    except ClientError as e:
        message = e.response.get("Error", {}).get("Message") or str(e)
        raise AwsError(f"{call} on {resource} failed: {_code(e)}: {message}; {fix}") from None
    except BotoCoreError as e:
        raise AwsError(f"{call} on {resource} failed: {e}; check the network and the endpoint") from None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))
