"""The run journal's copy in the state bucket, beside the cluster's Terraform state.

A run on any machine (a fresh CI runner has an empty state dir) reads the cluster's last run from
here and picks up where it stopped. One small object per cluster, read and written by key: no
listing, so a run costs the same in a fleet of thousands. Each write is conditional on the version
the run last saw, so of two runs at once only one keeps writing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import aws, network
from pipeline.config import Settings
from pipeline.model import AwsAccess


@dataclass(frozen=True)
class BucketCopy:
    access: AwsAccess
    bucket: str
    key: str

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def read(self) -> tuple[bytes, str] | None:
        return aws.read_object(self.access, self.bucket, self.key)

    def write(self, body: bytes, replacing: str | None) -> str | None:
        # None while the bucket does not exist: new-cluster's network stage makes it before Terraform runs.
        return aws.put_object(self.access, self.bucket, self.key, body, replacing=replacing)


def for_cluster(settings: Settings, access: AwsAccess, name: str) -> BucketCopy:
    """The copy of `name`'s run record in the state bucket of the account and region `access` reaches."""
    bucket = network.state_bucket(settings, aws.caller_identity(access), access.region)
    return BucketCopy(access, bucket, network.journal_key(name))
