"""Pre-flight of the spec's machine image: it exists in the cluster's region and fits its instance types.

Cluster API AWS would find out only when it launches the first machine, long after the merge.
"""

from __future__ import annotations

from pipeline import aws
from pipeline.errors import SpecError
from pipeline.model import AwsAccess
from pipeline.spec import LOOKUP_FORMAT, ClusterSpec


def check(spec: ClusterSpec, access: AwsAccess) -> aws.Image | None:
    """The image the spec names, as AWS has it; None when the spec leaves the choice to Cluster API AWS."""
    if spec.image is None:
        return None
    lookup = spec.image.lookup
    if lookup is None:
        field = f"image.ami.{spec.region}"
        # The model holds exactly one of ami and lookup, and an AMI for the cluster's region.
        wanted = (spec.image.ami or {})[spec.region]
        found = aws.image(access, wanted)
        if found is None:
            raise SpecError(field, f"{wanted} does not exist in {spec.region}", "give an AMI id of that region")
    else:
        field = "image.lookup"
        pattern = name_pattern(lookup.format or LOOKUP_FORMAT, lookup.base_os, spec.kubernetes_version)
        found = aws.newest_image(access, lookup.org, pattern)
        if found is None:
            raise SpecError(
                field,
                f"account {lookup.org} publishes no image named {pattern} in {spec.region}",
                "check org, baseOS and format, or give an AMI id",
            )
    _fits(spec, access, field, found)
    return found


def name_pattern(format_: str, base_os: str, kubernetes_version: str) -> str:
    return format_.replace("{{.BaseOS}}", base_os).replace("{{.K8sVersion}}", kubernetes_version.removeprefix("v"))


def _fits(spec: ClusterSpec, access: AwsAccess, field: str, found: aws.Image) -> None:
    machines = {"controlPlane.instanceType": spec.control_plane.instance_type} | {
        f"workers[{index}].instanceType": pool.instance_type for index, pool in enumerate(spec.workers)
    }
    offered = aws.architectures(access, machines.values())
    for where, kind in machines.items():
        if kind not in offered:
            raise SpecError(where, f"{kind} is not an instance type {spec.region} offers", "use one it does")
        if found.architecture not in offered[kind]:
            raise SpecError(
                field,
                f"{found.id} is {found.architecture}, and {where} {kind} runs {', '.join(offered[kind])}",
                "pick an image and instance types of one architecture",
            )
