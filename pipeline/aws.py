"""What Terraform does not do: the state bucket and pre-flight checks, through boto3."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from pipeline.errors import AwsError, AwsThrottled, AwsUnavailable, RecordChanged
from pipeline.model import AwsAccess

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_sts import STSClient

# Bounded, so a dead or throttling endpoint ends the run in bounded time: each call is sent at most
# MAX_ATTEMPTS times (the first try included). Between tries botocore's standard mode waits
# rand(0,1) * 2**i seconds after a throttle (under 1+2+4+8 = 15 s in all) and 50 ms * 2**i after a
# refused connection, a timeout or a 5xx (under 1 s in all); each try waits at most CONNECT_TIMEOUT
# to connect and READ_TIMEOUT for the answer.
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 30
_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
)
# The codes botocore's standard mode retries as throttling (botocore.retries.standard), and HTTP 429.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_THROTTLED_STATUS = 429
CONTINUES = "the next run continues from where this one stopped"
_MISSING_BUCKET = ("404", "NoSuchBucket", "NotFound")
_JSON = "application/json"


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


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    architecture: str  # EC2's word: x86_64, arm64, ...


def image(access: AwsAccess, image_id: str) -> Image | None:
    """The image of that id in the access's region; None when it has none."""
    with _translated("ec2:DescribeImages", image_id, "allow ec2:DescribeImages"):
        try:
            found = _client(access, "ec2").describe_images(ImageIds=[image_id])["Images"]
        except ClientError as e:
            if _code(e) in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"):
                return None
            raise
    return _newest(found)


def newest_image(access: AwsAccess, owner: str, name_pattern: str) -> Image | None:
    """The newest image that `owner` publishes in the region under a name `name_pattern` matches."""
    with _translated("ec2:DescribeImages", f"{owner}/{name_pattern}", "allow ec2:DescribeImages"):
        found = _client(access, "ec2").describe_images(
            Owners=[owner], Filters=[{"Name": "name", "Values": [name_pattern]}]
        )["Images"]
    return _newest(found)


def _newest(found: Sequence[Mapping[str, Any]]) -> Image | None:
    usable = [i for i in found if i.get("State", "available") == "available"]
    if not usable:
        return None
    latest = max(usable, key=lambda i: (str(i.get("CreationDate", "")), str(i["ImageId"])))
    return Image(str(latest["ImageId"]), str(latest.get("Name", "")), str(latest.get("Architecture", "")))


def architectures(access: AwsAccess, instance_types: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each instance type's processor architectures; a type the region does not offer is left out."""
    wanted = sorted(set(instance_types))
    ec2 = _client(access, "ec2")
    known: dict[str, tuple[str, ...]] = {}
    for kind in wanted:
        with _translated("ec2:DescribeInstanceTypes", kind, "allow ec2:DescribeInstanceTypes"):
            try:
                found = ec2.describe_instance_types(InstanceTypes=[kind])["InstanceTypes"]  # type: ignore[list-item]
            except ClientError as e:
                if _code(e) == "InvalidInstanceType":
                    continue
                raise
        for entry in found:
            known[kind] = tuple(entry.get("ProcessorInfo", {}).get("SupportedArchitectures", ()))
    return known


def ensure_state_bucket(access: AwsAccess, name: str) -> bool:
    """Create the bucket if missing; (re)assert versioning, encryption, TLS only and no public access.

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
    # Over a plain-HTTP endpoint (PIPELINE_AWS_ENDPOINT may name one) the policy would refuse Terraform's own state.
    if access.endpoint is None or access.endpoint.startswith("https://"):
        with _translated("s3:PutBucketPolicy", name, "allow s3:PutBucketPolicy on the bucket"):
            s3.put_bucket_policy(Bucket=name, Policy=json.dumps(tls_only_policy(name), sort_keys=True))
    return created


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """A bucket policy refusing every request that does not come over TLS: state holds the network's ids."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TLSOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


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
    state = read_state(access, bucket, key)
    return None if state is None else int(state["serial"])


def read_state(access: AwsAccess, bucket: str, key: str) -> dict[str, Any] | None:
    """The Terraform state object s3://bucket/key, read without Terraform; None when absent."""
    where = f"s3://{bucket}/{key}"
    with _translated("s3:GetObject", where, "allow s3:GetObject on the state bucket"):
        try:
            body = _client(access, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if _code(e) in (*_MISSING_BUCKET, "NoSuchKey"):
                return None
            raise
    try:
        state = json.loads(body)
    except ValueError:
        state = None
    serial = state.get("serial") if isinstance(state, dict) else None
    # bool is an int to Python, never to Terraform.
    if not isinstance(state, dict) or not isinstance(serial, int) or isinstance(serial, bool):
        raise AwsError(f"{where} is not Terraform state (no integer 'serial'); check PIPELINE_STATE_BUCKET")
    return state


def read_object(access: AwsAccess, bucket: str, key: str) -> tuple[bytes, str] | None:
    """s3://bucket/key's body and ETag; None when the object or the bucket is absent."""
    with _translated("s3:GetObject", f"s3://{bucket}/{key}", "allow s3:GetObject on the state bucket"):
        try:
            found = _client(access, "s3").get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if _code(e) in (*_MISSING_BUCKET, "NoSuchKey"):
                return None
            raise
        return found["Body"].read(), found["ETag"]


def put_object(access: AwsAccess, bucket: str, key: str, body: bytes, *, replacing: str | None) -> str | None:
    """Write s3://bucket/key only over the version whose ETag is `replacing`, or only where none is (None).

    The new ETag; None when the bucket does not exist yet, and nothing was written.
    RecordChanged when another writer got there first: S3 checks the condition, so two writers cannot both win.
    """
    where = f"s3://{bucket}/{key}"
    s3 = _client(access, "s3")
    with _translated("s3:PutObject", where, "allow s3:PutObject on the state bucket"):
        try:
            if replacing is None:
                put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=_JSON, IfNoneMatch="*")
            else:
                put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=_JSON, IfMatch=replacing)
        except ClientError as e:
            code = _code(e)
            if code in _MISSING_BUCKET:
                return None
            # 412 when the condition fails; 409 while a concurrent conditional write is in flight; NoSuchKey when
            # the object to replace was deleted meanwhile.
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                raise RecordChanged(f"{where} changed since this run read it ({code})") from None
            raise
    return put["ETag"]


def delete_object_if(access: AwsAccess, bucket: str, key: str, etag: str) -> bool:
    """Delete s3://bucket/key only while it is the version whose ETag is `etag`; False when it changed or went."""
    where = f"s3://{bucket}/{key}"
    with _translated("s3:DeleteObject", where, "allow s3:DeleteObject on the state bucket"):
        try:
            _client(access, "s3").delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        except ClientError as e:
            if _code(e) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                return False
            raise
    return True


def state_keys(access: AwsAccess, bucket: str) -> frozenset[str]:
    """Every key in the state bucket, from one listing (a page per thousand); none when the bucket is missing."""
    with _translated("s3:ListBucket", f"s3://{bucket}", "allow s3:ListBucket on the state bucket"):
        keys: set[str] = set()
        try:
            for page in _client(access, "s3").get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys.update(item["Key"] for item in page.get("Contents", ()))
        except ClientError as e:
            if _code(e) in _MISSING_BUCKET:
                return frozenset()
            raise
    return frozenset(keys)


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
@overload
def _client(access: AwsAccess, service: Literal["iam", "kms", "logs"]) -> Any: ...
@functools.lru_cache(maxsize=32)
def _client(access: AwsAccess, service: str) -> Any:
    """One client per endpoint, credentials and service for the whole process: making one costs milliseconds,
    and clients are safe to share between threads."""
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
    # None: botocore's own choice (AWS_CA_BUNDLE from the environment, else its bundled CAs).
    verify = env.get(AwsAccess.CA_BUNDLE)
    client = session.client(  # type: ignore[call-overload]
        service, endpoint_url=access.endpoint, config=config, verify=verify
    )
    client.meta.events.register("needs-retry", _note_attempt)
    return client


@dataclass
class _Attempts:
    """How often botocore sent the latest AWS operation of a translated block (retries included), and where."""

    count: int = 0
    endpoint: str = "the AWS endpoint"


_ATTEMPTS: ContextVar[_Attempts | None] = ContextVar("aws_attempts", default=None)


def _note_attempt(attempts: int, request_dict: Mapping[str, Any], **_: object) -> None:
    """botocore's needs-retry hook, called after every try with its number; None leaves the decision to retry."""
    noted = _ATTEMPTS.get()
    if noted is not None:
        noted.count = attempts
        url = urlsplit(str(request_dict.get("url", "")))
        if url.netloc:
            noted.endpoint = f"{url.scheme}://{url.netloc}"


@contextmanager
def _translated(call: str, resource: str, fix: str) -> Iterator[None]:
    """AWS's failures as one line each; what outlasted the retries says so, how often and where."""
    attempts = _Attempts()
    token = _ATTEMPTS.set(attempts)
    try:
        yield
    except NoCredentialsError:
        raise AwsError(
            f"{call} on {resource}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID"
        ) from None
    except ClientError as e:
        code = _code(e)
        message = e.response.get("Error", {}).get("Message") or str(e)
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        tried = f"{_tries(attempts.count)} at {attempts.endpoint}"
        if code in THROTTLING_CODES or status == _THROTTLED_STATUS:
            raise AwsThrottled(
                f"{call} on {resource} failed: throttled ({code}: {message}) {tried}; wait and run again; {CONTINUES}"
            ) from None
        if status >= 500:
            raise AwsUnavailable(
                f"{call} on {resource} failed: {code}: {message} {tried}; wait and run again; {CONTINUES}"
            ) from None
        raise AwsError(f"{call} on {resource} failed: {code}: {message}; {fix}") from None
    except (EndpointUnreachable, HTTPClientError) as e:
        raise AwsUnavailable(
            f"{call} on {resource} failed: no answer {_tries(attempts.count)} at {attempts.endpoint} ({e}); "
            f"check the network and the endpoint, then run again; {CONTINUES}"
        ) from None
    except BotoCoreError as e:
        raise AwsError(f"{call} on {resource} failed: {e}; check the network and the endpoint") from None
    finally:
        _ATTEMPTS.reset(token)


def _tries(count: int) -> str:
    return f"after {count} attempt{'' if count == 1 else 's'}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


CLUSTER_TAG = "fleet-pipeline/cluster"  # every resource the stack makes carries it (provider default_tags)


# The resource types the stack makes, in the order their orphans are deleted: dependents first.
ORPHAN_TYPES = (
    "aws_flow_log",
    "aws_instance",
    "aws_nat_gateway",
    "aws_vpc_endpoint",
    "aws_internet_gateway",
    "aws_route_table",
    "aws_subnet",
    "aws_security_group",
    "aws_vpc",
    "aws_eip",
    # Account-wide and named after the cluster: left behind, they refuse the next apply's create.
    "aws_kms_alias",
    "aws_cloudwatch_log_group",
    "aws_iam_instance_profile",
    "aws_iam_role",
    "aws_kms_key",
)


def tagged_resources(access: AwsAccess, cluster: str) -> dict[str, tuple[str, ...]]:
    """The ids of the live resources of each stack type that carry `cluster`'s tag, state or no state."""
    ec2 = _client(access, "ec2")
    tagged = _tag_filter(cluster)
    with _translated("ec2:Describe*", f"the resources of cluster {cluster}", "check AWS credentials and region"):
        reservations = ec2.describe_instances(Filters=tagged)["Reservations"]
        found: dict[str, list[Any]] = {
            "aws_flow_log": list(ec2.describe_flow_logs(Filters=tagged)["FlowLogs"]),
            "aws_instance": [i for r in reservations for i in r["Instances"]],
            "aws_nat_gateway": list(ec2.describe_nat_gateways(Filters=tagged)["NatGateways"]),
            "aws_vpc_endpoint": list(ec2.describe_vpc_endpoints(Filters=tagged)["VpcEndpoints"]),
            "aws_internet_gateway": list(ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"]),
            "aws_route_table": list(ec2.describe_route_tables(Filters=tagged)["RouteTables"]),
            "aws_subnet": list(ec2.describe_subnets(Filters=tagged)["Subnets"]),
            # A VPC's default group is made and removed with its VPC: never an orphan of its own.
            "aws_security_group": [
                group
                for group in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]
                if group.get("GroupName") != "default"
            ],
            "aws_vpc": list(ec2.describe_vpcs(Filters=tagged)["Vpcs"]),
            "aws_eip": list(ec2.describe_addresses(Filters=tagged)["Addresses"]),
        }
    tagged_ids = {
        kind: tuple(sorted(item[_ID_FIELD[kind]] for item in items if _live(item) and _carries(item, cluster)))
        for kind, items in found.items()
    }
    return tagged_ids | _named_resources(access, cluster)


def named_after(cluster: str) -> dict[str, tuple[str, ...]]:
    """The account-wide names the cluster stack gives its resources (terraform/stacks/cluster, its modules)."""
    return {
        "aws_kms_alias": (f"alias/fleet-pipeline/{cluster}/secrets",),
        "aws_cloudwatch_log_group": (
            f"{LOG_GROUP_PREFIX}{cluster}/kube-apiserver-audit",
            f"{LOG_GROUP_PREFIX}{cluster}/vpc-flow-logs",
        ),
        "aws_iam_instance_profile": (f"{cluster}-bastion-ssm",),
        "aws_iam_role": (f"{cluster}-bastion-ssm", f"{cluster}-vpc-flow-logs"),
    }


LOG_GROUP_PREFIX = "/fleet-pipeline/"


def _named_resources(access: AwsAccess, cluster: str) -> dict[str, tuple[str, ...]]:
    """Those of the stack's named resources that exist and are the cluster's, and the KMS keys they lead to.

    Looked up by name, a few calls a cluster whatever the account holds; a key is found through the alias
    or the log group that uses it, and only taken when it carries the cluster's tag.
    """
    names = named_after(cluster)
    iam, kms, logs = _client(access, "iam"), _client(access, "kms"), _client(access, "logs")
    with _translated("kms:DescribeKey", f"the keys of cluster {cluster}", "allow kms:DescribeKey"):
        targets = {alias: _absent_as_none(kms.describe_key, KeyId=alias) for alias in names["aws_kms_alias"]}
        aliases = {alias: found["KeyMetadata"]["KeyId"] for alias, found in targets.items() if found is not None}
    with _translated("logs:DescribeLogGroups", f"the log groups of cluster {cluster}", "allow logs:DescribeLogGroups"):
        listed = logs.describe_log_groups(logGroupNamePrefix=f"{LOG_GROUP_PREFIX}{cluster}/")["logGroups"]
        groups = [g for g in listed if g["logGroupName"] in names["aws_cloudwatch_log_group"]]
    with _translated("iam:GetRole", f"the roles of cluster {cluster}", "allow iam:GetRole, iam:GetInstanceProfile"):
        roles = [
            name
            for name in names["aws_iam_role"]
            if _carries(_absent_as_none(iam.get_role, RoleName=name, key="Role"), cluster)
        ]
        profiles = [
            name
            for name in names["aws_iam_instance_profile"]
            if _carries(
                _absent_as_none(iam.get_instance_profile, InstanceProfileName=name, key="InstanceProfile"), cluster
            )
        ]
    keys = set(aliases.values()) | {g["kmsKeyId"].rsplit("/", 1)[-1] for g in groups if g.get("kmsKeyId")}
    with _translated("kms:ListResourceTags", f"the keys of cluster {cluster}", "allow kms:ListResourceTags"):
        owned = [key for key in sorted(keys) if _key_of(kms, key, cluster)]
    return {
        "aws_kms_alias": tuple(sorted(aliases)),
        "aws_cloudwatch_log_group": tuple(sorted(g["logGroupName"] for g in groups)),
        "aws_iam_instance_profile": tuple(profiles),
        "aws_iam_role": tuple(roles),
        "aws_kms_key": tuple(owned),
    }


def _key_of(kms: Any, key: str, cluster: str) -> bool:
    """Whether the key is the cluster's and not already on its way out."""
    if kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] in ("PendingDeletion", "PendingReplicaDeletion"):
        return False
    return {"TagKey": CLUSTER_TAG, "TagValue": cluster} in kms.list_resource_tags(KeyId=key)["Tags"]


def _absent_as_none(call: Callable[..., Any], key: str | None = None, **arguments: str) -> Any:
    """What call answers (its `key` field, when given); None when there is no such resource."""
    try:
        answer = call(**arguments)
    except ClientError as e:
        if _code(e) in ("NotFoundException", "NoSuchEntity", "ResourceNotFoundException"):
            return None
        raise
    return answer if key is None else answer[key]


_ID_FIELD = {
    "aws_flow_log": "FlowLogId",
    "aws_instance": "InstanceId",
    "aws_nat_gateway": "NatGatewayId",
    "aws_vpc_endpoint": "VpcEndpointId",
    "aws_internet_gateway": "InternetGatewayId",
    "aws_route_table": "RouteTableId",
    "aws_subnet": "SubnetId",
    "aws_security_group": "GroupId",
    "aws_vpc": "VpcId",
    "aws_eip": "AllocationId",
}


def _live(item: Mapping[str, Any]) -> bool:
    state = item.get("State")
    name = state.get("Name") if isinstance(state, Mapping) else state
    return str(name or "").lower() not in ("terminated", "shutting-down", "deleted", "deleting")


def _carries(item: Mapping[str, Any] | None, cluster: str) -> bool:
    """Checked here too: not every endpoint honours every tag filter (moto's NAT gateways ignore it)."""
    if item is None:
        return False
    return {"Key": CLUSTER_TAG, "Value": cluster} in [
        {"Key": tag.get("Key"), "Value": tag.get("Value")} for tag in item.get("Tags", item.get("TagSet", []))
    ]


def delete_resources(access: AwsAccess, doomed: Mapping[str, tuple[str, ...]]) -> None:
    """Delete the given resources, type by type in ORPHAN_TYPES order; a VPC with all it still holds.

    A KMS key is scheduled for deletion after AWS's shortest wait, as keys are: until then it can be restored.
    """
    ec2 = _client(access, "ec2")
    with _translated("Delete*", "the orphaned resources", "delete what is left from the AWS console, then run again"):
        for kind in ORPHAN_TYPES:
            ids = list(doomed.get(kind, ()))
            if not ids:
                continue
            if kind in _DELETERS:
                _DELETERS[kind](ec2, ids)
            else:
                _NAMED_DELETERS[kind](access, ids)


def _delete_aliases(access: AwsAccess, ids: list[str]) -> None:
    for alias in ids:
        _client(access, "kms").delete_alias(AliasName=alias)


def _delete_log_groups(access: AwsAccess, ids: list[str]) -> None:
    for group in ids:
        _client(access, "logs").delete_log_group(logGroupName=group)


def _delete_instance_profiles(access: AwsAccess, ids: list[str]) -> None:
    iam = _client(access, "iam")
    for profile in ids:
        for role in iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]:
            iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=profile)


def _schedule_key_deletions(access: AwsAccess, ids: list[str]) -> None:
    for key in ids:
        _client(access, "kms").schedule_key_deletion(KeyId=key, PendingWindowInDays=7)


def _delete_roles(access: AwsAccess, roles: list[str]) -> None:
    iam = _client(access, "iam")
    for role in roles:
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            iam.delete_role_policy(RoleName=role, PolicyName=name)
        for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=attached["PolicyArn"])
        for profile in iam.list_instance_profiles_for_role(RoleName=role)["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=role)
        iam.delete_role(RoleName=role)


def _delete_instances(ec2: EC2Client, ids: list[str]) -> None:
    ec2.terminate_instances(InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 2})


def _delete_nat_gateways(ec2: EC2Client, ids: list[str]) -> None:
    for nat in ids:
        ec2.delete_nat_gateway(NatGatewayId=nat)
    ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=ids, WaiterConfig={"Delay": 2})


def _delete_internet_gateways(ec2: EC2Client, ids: list[str]) -> None:
    for gateway in ec2.describe_internet_gateways(InternetGatewayIds=ids)["InternetGateways"]:
        for attachment in gateway.get("Attachments", []):
            ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=attachment["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])


def _delete_route_tables(ec2: EC2Client, ids: list[str]) -> None:
    for table in ec2.describe_route_tables(RouteTableIds=ids)["RouteTables"]:
        associations = table.get("Associations", [])
        if any(a.get("Main") for a in associations):
            continue  # goes with its VPC
        for association in associations:
            ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])


def _delete_vpcs(ec2: EC2Client, ids: list[str]) -> None:
    """Each VPC after whatever untagged dependents it still holds, as the console's "delete VPC" does."""
    for vpc in ids:
        in_vpc: list[FilterTypeDef] = [{"Name": "vpc-id", "Values": [vpc]}]
        reservations = ec2.describe_instances(Filters=in_vpc)["Reservations"]
        instances = [i["InstanceId"] for r in reservations for i in r["Instances"]]
        if instances:
            _delete_instances(ec2, instances)
        nats = [n["NatGatewayId"] for n in ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"]]
        if nats:
            _delete_nat_gateways(ec2, nats)
        endpoints = [e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints(Filters=in_vpc)["VpcEndpoints"]]
        if endpoints:
            _delete_endpoints(ec2, endpoints)
        attached: list[FilterTypeDef] = [{"Name": "attachment.vpc-id", "Values": [vpc]}]
        gateways = [
            g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=attached)["InternetGateways"]
        ]
        if gateways:
            _delete_internet_gateways(ec2, gateways)
        _delete_route_tables(ec2, [r["RouteTableId"] for r in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]])
        _delete_subnets(ec2, [s["SubnetId"] for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]])
        groups = ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]
        _delete_security_groups(ec2, [g["GroupId"] for g in groups if g["GroupName"] != "default"])
        ec2.delete_vpc(VpcId=vpc)


def _delete_endpoints(ec2: EC2Client, ids: list[str]) -> None:
    ec2.delete_vpc_endpoints(VpcEndpointIds=ids)


def _delete_subnets(ec2: EC2Client, ids: list[str]) -> None:
    for subnet in ids:
        ec2.delete_subnet(SubnetId=subnet)


def _delete_security_groups(ec2: EC2Client, ids: list[str]) -> None:
    for group in ids:
        ec2.delete_security_group(GroupId=group)


def _release_addresses(ec2: EC2Client, ids: list[str]) -> None:
    for allocation in ids:
        ec2.release_address(AllocationId=allocation)


def _delete_flow_logs(ec2: EC2Client, ids: list[str]) -> None:
    ec2.delete_flow_logs(FlowLogIds=ids)


_DELETERS: dict[str, Callable[[EC2Client, list[str]], None]] = {
    "aws_flow_log": _delete_flow_logs,
    "aws_instance": _delete_instances,
    "aws_nat_gateway": _delete_nat_gateways,
    "aws_vpc_endpoint": _delete_endpoints,
    "aws_internet_gateway": _delete_internet_gateways,
    "aws_route_table": _delete_route_tables,
    "aws_subnet": _delete_subnets,
    "aws_security_group": _delete_security_groups,
    "aws_vpc": _delete_vpcs,
    "aws_eip": _release_addresses,
}


_NAMED_DELETERS: dict[str, Callable[[AwsAccess, list[str]], None]] = {
    "aws_kms_alias": _delete_aliases,
    "aws_cloudwatch_log_group": _delete_log_groups,
    "aws_iam_instance_profile": _delete_instance_profiles,
    "aws_iam_role": _delete_roles,
    "aws_kms_key": _schedule_key_deletions,
}


def _tag_filter(cluster: str) -> list[FilterTypeDef]:
    return [{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]}]
