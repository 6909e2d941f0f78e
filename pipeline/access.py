"""How a command reaches the account its target's networks live in."""

from __future__ import annotations

from pipeline import local_endpoint
from pipeline.config import Settings
from pipeline.model import AwsAccess


def for_target(settings: Settings, region: str) -> AwsAccess:
    """The local endpoint (started when none answers) for the local target; AWS's own endpoints for aws."""
    if settings.target == "local":
        return local_endpoint.ensure(settings, region)
    return AwsAccess(region=region, endpoint=None, env=())
