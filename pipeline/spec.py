"""The cluster spec as one declarative model: each field once, with its type, bounds, default and description.

pydantic checks spec files against it and publishes it as JSON Schema; `spec_source` reads the files and
words the faults. Parsing only parses: `allocation` places the VPC CIDR of a spec without one.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from pipeline import addons
from pipeline.errors import PipelineError
from pipeline.model import fingerprint
from pipeline.spec_source import Form, NullIs, SpecModel, SpecSource, YamlText, refuse

# The API server load balancer is named "<cluster>-apiserver"; AWS caps load balancer names at 32.
MAX_NAME_LENGTH = 32 - len("-apiserver")
# The minors that the pinned Cluster API supports and the cloud-controller-manager table has an image for.
SUPPORTED_MINORS = tuple(sorted(addons.CCM_IMAGES))
# Terraform adds its own tags (Name, kubernetes.io/...) to each resource; AWS allows 50 in all.
MAX_USER_TAGS = 40
INT32_MAX = 2**31 - 1  # replicas are int32 in the Cluster API types
Endpoint = Literal[
    "autoscaling", "ec2", "ec2messages", "ecr.api", "ecr.dkr", "elasticloadbalancing", "kms", "logs", "s3",
    "secretsmanager", "ssm", "ssmmessages", "sts",
]  # fmt: skip
KNOWN_ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
NatMode = Literal["single", "per-zone"]
# Cluster API AWS's default name pattern for looked-up images; K8sVersion comes without its "v".
LOOKUP_FORMAT = "capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*"
_SUPPORTED = ", ".join(f"v1.{minor}.x" for minor in SUPPORTED_MINORS)
_DNS_LABEL_FIX = "use lowercase letters, digits and '-', starting and ending with a letter or digit"
_OPEN_SSH_FIX = "list your own CIDRs, or set bastion.allowOpenSSH: true to accept that"
_OPEN_API_FIX = "list your own CIDRs, or set apiServer.allowOpenAccess: true to accept that"
# The retention periods CloudWatch Logs accepts, in days.
RetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
]  # fmt: skip


def _cidr(example: str, vpc: bool) -> AfterValidator:
    def check(text: str) -> str:
        try:
            network = ipaddress.ip_network(text)
        except ValueError:
            raise refuse(f"'{text}' is not a CIDR block", f"write it as {example}") from None
        # A /24 still holds six zones' public and private subnets at /28, AWS's smallest.
        if vpc and (network.version == 6 or not 16 <= network.prefixlen <= 24):
            raise refuse(f"{text} is not an IPv4 /16 to /24", "use a /16 to /24 block")
        if network.version == 6:
            raise refuse(f"{text} is IPv6; the bastion is reached over IPv4", "list IPv4 CIDRs")
        return str(network)

    return AfterValidator(check)


def _not_open_unless_asked(cidrs: tuple[str, ...], allowed: object, what: str, fix: str) -> tuple[str, ...]:
    """A list of CIDRs that, alone or together, admits the whole internet, unless the spec says so."""
    if allowed is not True:
        networks = [ipaddress.IPv4Network(cidr) for cidr in cidrs]
        # By prefix, not spelling: 0.0.0.0/0.0.0.0 opens as much as 0.0.0.0/0 does.
        for index, network in enumerate(networks):
            if network.prefixlen == 0:
                raise refuse(f"{network} opens {what} to the whole internet", fix, index)
        if ipaddress.IPv4Network("0.0.0.0/0") in ipaddress.collapse_addresses(networks):
            raise refuse(f"together these blocks open {what} to the whole internet", fix)
    return tuple(sorted(set(cidrs)))


def _own_tag_key(key: str) -> str:
    if key.lower().startswith(("aws:", "kubernetes.io/", "sigs.k8s.io/")):
        raise refuse(f"the prefix of '{key}' is reserved", "use your own prefix")
    return key


def _listed_once(items: tuple[str, ...]) -> tuple[str, ...]:
    twice = next((item for item in items if items.count(item) > 1), None)
    if twice is not None:
        raise refuse(f"lists '{twice}' twice", "list each once")
    return items


def _number_text(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


# For editors: the address and the prefix (or netmask) that `_cidr` then checks as numbers.
IPV4_CIDR = WithJsonSchema(
    {"type": "string", "pattern": r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]{1,2}|([0-9]{1,3}\.){3}[0-9]{1,3})$"}
)
TAG_VALUE = WithJsonSchema({"type": ["string", "number"], "maxLength": 256})  # a number is its text
InstanceType = Annotated[
    str,
    Form(
        r"[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|metal|[0-9]*xlarge)(-[0-9]+xl)?",
        "'{}' is not an EC2 instance type",
        "use the AWS form, e.g. m6i.large",
        "m6i.large",
    ),
]
Replicas = Annotated[int, Strict(), Field(le=INT32_MAX)]
Zone = Annotated[
    str,
    Form(
        r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9][a-z]",
        "'{}' is not an availability zone",
        "use one such as us-east-1a",
        "us-east-1a",
    ),
]
Seconds = Annotated[int, Strict(), Field(ge=30, le=86400)]
RootVolumeSize = Annotated[int, Strict(), Field(ge=8, le=16384)]  # gp3's bounds in GiB; CAPA wants 8 or more
Namespace = Annotated[
    str, Form(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", "'{}' is not a namespace", _DNS_LABEL_FIX, "payments", 63)
]
Region = Annotated[
    str,
    Form(
        r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]",
        "'{}' is not an AWS region",
        "use a region such as us-east-1",
        "eu-west-1",
    ),
]


class NetworkSpec(SpecModel):
    cidr: Annotated[str, Strict(), IPV4_CIDR, _cidr("10.20.0.0/16", vpc=True)] | None = Field(
        default=None, examples=["10.20.0.0/16"]
    )
    """The VPC's IPv4 block, /16 to /24; omitted, the fleet allocates a free /16 of 10.0.0.0/8."""
    zones: Annotated[int, Strict(), Field(ge=1, le=6)] = 2
    """Availability zones with a public and a private subnet each; the region must have as many."""
    nat_gateways: NatMode = "single"
    """One NAT gateway for the VPC, or one per zone so that a zone's outage leaves the others online."""
    endpoints: Annotated[
        tuple[Endpoint, ...],
        NullIs(()),
        Field(strict=False, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_listed_once),
        AfterValidator(lambda endpoints: tuple(sorted(endpoints))),
    ] = ("kms", "logs", "s3", "sts")
    """VPC endpoints, so nodes reach these AWS services without the NAT (KMS for Secrets, logs for the audit log)."""
    flow_log_retention_days: RetentionDays = 365
    """Days CloudWatch Logs keeps the VPC's flow logs (every accepted and rejected connection)."""


class BastionSpec(SpecModel):
    enabled: Annotated[bool, Strict()] = True
    """A bastion host in a public subnet, the one way in over SSH."""
    allow_open_ssh: Annotated[bool, Strict()] = Field(
        default=False, validation_alias="allowOpenSSH", serialization_alias="allowOpenSSH"
    )
    """Accept allowedCIDRs that open SSH to the whole internet."""
    allowed_cidrs: Annotated[
        tuple[Annotated[str, Strict(), IPV4_CIDR, _cidr("203.0.113.0/24", vpc=False)], ...],
        NullIs(()),
        Field(strict=False),
    ] = Field(
        default=(), validation_alias="allowedCIDRs", serialization_alias="allowedCIDRs", examples=[["203.0.113.0/24"]]
    )
    """IPv4 blocks that may reach the bastion on port 22; none: nobody can."""
    instance_type: InstanceType = "t3.micro"
    """The bastion's EC2 instance type."""
    mode: Literal["ssh", "ssm"] = "ssh"
    """How people reach it: SSH on port 22 from allowedCIDRs, or SSM Session Manager with no port open at all."""

    @model_validator(mode="after")
    def _no_cidrs_without_ssh(self) -> Self:
        if self.mode == "ssm" and self.allowed_cidrs:
            raise refuse("are for SSH, which mode ssm keeps closed", "remove allowedCIDRs", "allowedCIDRs")
        return self

    @field_validator("allowed_cidrs")
    @classmethod
    def _open_only_if_asked(cls, cidrs: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _not_open_unless_asked(cidrs, info.data.get("allow_open_ssh"), "SSH", _OPEN_SSH_FIX)


class ApiServerSpec(SpecModel):
    allow_open_access: Annotated[bool, Strict()] = False
    """Accept allowedCIDRs that open the Kubernetes API to the whole internet."""
    allowed_cidrs: Annotated[
        tuple[Annotated[str, Strict(), IPV4_CIDR, _cidr("203.0.113.0/24", vpc=False)], ...],
        NullIs(()),
        Field(strict=False),
    ] = Field(
        default=(), validation_alias="allowedCIDRs", serialization_alias="allowedCIDRs", examples=[["203.0.113.0/24"]]
    )
    """IPv4 blocks that may reach the Kubernetes API on 6443, besides the management cluster's (fleet.yaml)."""
    internal: Annotated[bool, Strict()] = False
    """An internal load balancer in the private subnets: the API is reachable from inside the VPC (and peers) only."""

    @field_validator("allowed_cidrs")
    @classmethod
    def _open_only_if_asked(cls, cidrs: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _not_open_unless_asked(cidrs, info.data.get("allow_open_access"), "the Kubernetes API", _OPEN_API_FIX)


class PodSecurity(SpecModel):
    enforce: Literal["baseline", "restricted"] = "baseline"
    """The Pod Security Standard every namespace is held to; audit and warn are always at restricted."""


class NetworkPolicies(SpecModel):
    namespaces: Annotated[
        tuple[Namespace, ...],
        NullIs(()),
        Field(strict=False),
        AfterValidator(_listed_once),
        AfterValidator(lambda names: tuple(sorted(names))),
    ] = ()
    """Namespaces of the workload cluster that get default-deny NetworkPolicies besides default (DNS stays open)."""


class ControlPlaneSpec(SpecModel):
    # The bounds for editors too; the validator says why in its own words.
    replicas: Annotated[Replicas, Field(json_schema_extra={"minimum": 1, "not": {"multipleOf": 2}})] = 1
    """Control-plane machines: 1, 3 or 5, an odd number so that etcd keeps quorum."""
    instance_type: InstanceType = "m6i.large"
    """The control-plane machines' EC2 instance type."""
    root_volume_size: RootVolumeSize = 80
    """GiB of the machines' encrypted root volume."""
    audit_log_retention_days: RetentionDays = 365
    """Days CloudWatch Logs keeps the API server's audit log, shipped there off the nodes."""

    @field_validator("replicas")
    @classmethod
    def _odd(cls, replicas: int) -> int:
        if replicas < 1 or replicas % 2 == 0:
            raise refuse(f"{replicas} control plane machines cannot keep etcd quorum", "use an odd number: 1, 3 or 5")
        return replicas


class Autoscaling(SpecModel):
    min_size: Annotated[Replicas, Field(ge=0)]
    """The fewest machines the cluster autoscaler keeps in the pool, across its zones."""
    max_size: Annotated[Replicas, Field(ge=1)]
    """The most machines the cluster autoscaler grows the pool to, across its zones."""

    @field_validator("max_size")
    @classmethod
    def _not_below_min(cls, max_size: int, info: ValidationInfo) -> int:
        min_size = info.data.get("min_size")
        if isinstance(min_size, int) and max_size < min_size:
            raise refuse(f"{max_size} is less than minSize {min_size}", f"use {min_size} or more")
        return max_size


class WorkerPool(SpecModel):
    name: Annotated[
        str, Form(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", "'{}' is not a DNS-1123 label", _DNS_LABEL_FIX, "default", 20)
    ]
    """The pool's name, part of its MachineDeployment's name."""
    replicas: Annotated[Replicas, Field(ge=0)] = 1
    """Worker machines in the pool, split evenly across its zones (the first zones take the remainder)."""
    instance_type: InstanceType = "m6i.large"
    """The pool's EC2 instance type."""
    root_volume_size: RootVolumeSize = 80
    """GiB of the machines' encrypted root volume."""
    zones: (
        Annotated[
            tuple[Zone, ...],
            Field(strict=False, min_length=1, json_schema_extra={"uniqueItems": True}),
            AfterValidator(_listed_once),
        ]
        | None
    ) = None  # fmt: skip
    """Zones of the network the pool spans, a MachineDeployment each; omitted: every zone of the network."""
    autoscaling: Autoscaling | None = None
    """Bounds for the cluster autoscaler, which then owns the pool's size; replicas is left out."""

    @model_validator(mode="after")
    def _sized_once(self) -> Self:
        if self.autoscaling is not None and "replicas" in self.model_fields_set:
            raise refuse("is set beside autoscaling, which owns the pool's size", "remove replicas", "replicas")
        return self


ChartVersion = Annotated[
    str,
    Form(
        r"v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?",
        "'{}' is not a chart version",
        "pin one such as 1.2.3",
        "1.2.3",
    ),
]
Values = Annotated[dict[str, JsonValue], Field(strict=False)]


class DefaultAddon(SpecModel):
    enabled: Annotated[bool, Strict()] = True
    """Install it; off, another add-on must provide what it does (see extra[].provides)."""
    version: ChartVersion | None = None
    """The chart's version; omitted: the one this pipeline is pinned to."""
    values: Values = Field(default_factory=dict)
    """Helm values merged over the pipeline's own."""


class ChartSignature(SpecModel):
    provider: Literal["cosign", "notation"] = "cosign"
    """How upstream signs the chart."""
    secret_ref: (
        Annotated[
            str,
            Form(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", "'{}' is not a Secret name", _DNS_LABEL_FIX, "chart-keys", 253),
        ]
        | None
    ) = None  # fmt: skip
    """A Secret in the cluster's namespace with the trusted public keys; omitted with cosign: keyless."""


class ChartSource(SpecModel):
    repository: Annotated[
        str,
        Form(
            r"(https|oci)://[^\s]+",
            "'{}' is not an https:// or oci:// URL",
            "give the chart repository's URL",
            "https://charts.example.com",
        ),
    ]
    """The Helm repository (https://) or OCI registry path (oci://) of the chart."""
    name: Annotated[
        str,
        Form(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", "'{}' is not a chart name", "use the chart's name", "metrics-server"),
    ]
    version: ChartVersion
    """The chart's version, pinned."""
    verify: ChartSignature | None = None
    """Have Flux verify the chart's signature before installing it (an oci:// chart only)."""

    @model_validator(mode="after")
    def _verified_from_oci(self) -> Self:
        if self.verify is not None and not self.repository.startswith("oci://"):
            raise refuse("Flux verifies the signatures of OCI charts only", "use the chart's oci:// address", "verify")
        return self


class ExtraAddon(SpecModel):
    name: Annotated[
        str,
        Form(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", "'{}' is not a DNS-1123 label", _DNS_LABEL_FIX, "metrics-server", 30),
    ]
    """The add-on's name, part of its Flux object's name."""
    chart: ChartSource | None = None
    """A Helm chart, installed with Flux's HelmRelease."""
    path: (
        Annotated[
            str,
            Form(
                r"\./[-._/a-zA-Z0-9]+",
                "'{}' is not a path in the fleet",
                "write it as ./addons/NAME",
                "./addons/baseline",
            ),
        ]
        | None
    ) = None
    """A folder of the fleet repo, applied with a Flux Kustomization."""
    namespace: Annotated[
        str, Form(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", "'{}' is not a namespace", _DNS_LABEL_FIX, "kube-system", 63)
    ] = "kube-system"
    """The workload cluster's namespace it is installed into."""
    values: Values = Field(default_factory=dict)
    """Helm values (a chart only)."""
    provides: addons.Role | None = None
    """The part of a Ready cluster it plays instead of a default add-on that is turned off."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.chart is None) == (self.path is None):
            raise refuse("needs either a chart or a path", "give chart: {repository, name, version}, or path: ./...")
        if self.path is not None and self.values:
            raise refuse("values are for a chart", "remove values, or put them in the folder", "values")
        return self


class Addons(SpecModel):
    cilium: Annotated[DefaultAddon, NullIs({})] = DefaultAddon()
    """The CNI: Cilium, which also enforces NetworkPolicies."""
    aws_cloud_controller_manager: Annotated[DefaultAddon, NullIs({})] = DefaultAddon()
    """The AWS cloud-controller-manager; its image follows the cluster's Kubernetes minor."""
    aws_ebs_csi_driver: Annotated[DefaultAddon, NullIs({})] = DefaultAddon()
    """The EBS CSI driver, with a default encrypted gp3 StorageClass."""
    fluent_bit: Annotated[DefaultAddon, NullIs({})] = DefaultAddon()
    """Fluent Bit on the control-plane nodes, shipping the API server's audit log to CloudWatch Logs."""
    extra: Annotated[tuple[ExtraAddon, ...], NullIs(()), Field(strict=False)] = ()
    """Add-ons of your own, installed after the defaults."""

    @field_validator("extra")
    @classmethod
    def _named_once(cls, extra: tuple[ExtraAddon, ...]) -> tuple[ExtraAddon, ...]:
        names = [addon.name for addon in extra]
        _listed_once(tuple(names))
        return extra


class HealthChecks(SpecModel):
    enabled: Annotated[bool, Strict()] = True
    """MachineHealthChecks for the control plane and each pool: Cluster API replaces machines that fail them."""
    node_startup_seconds: Seconds = 1200
    """How long a new machine may take to become a Node before it is replaced."""
    unhealthy_seconds: Seconds = 300
    """How long a Node may be not Ready (or unknown) before its machine is replaced."""


class ImageLookup(SpecModel):
    org: Annotated[
        str,
        Form(r"[0-9]{12}", "'{}' is not an AWS account id", "give the 12 digits of the images' owner", "258751437250"),
    ]
    """The AWS account that publishes the images."""
    base_os: Annotated[
        str,
        Form(r"[a-z0-9][-a-z0-9.]*", "'{}' is not a base OS name", "use one such as ubuntu-24.04", "ubuntu-24.04"),
    ] = Field(default="ubuntu-24.04", validation_alias="baseOS", serialization_alias="baseOS")
    """The base operating system in the images' names."""
    format: (
        Annotated[
            str,
            Form(r"[!-~]{1,128}", "is not an image name pattern", "use one such as " + LOOKUP_FORMAT, LOOKUP_FORMAT),
        ]
        | None
    ) = None  # fmt: skip
    """The images' name pattern with {{.BaseOS}} and {{.K8sVersion}}; omitted: Cluster API AWS's own."""


class ImageSpec(SpecModel):
    ami: (
        Annotated[
            dict[
                Region,
                Annotated[
                    str,
                    Form(
                        r"ami-([0-9a-f]{8}|[0-9a-f]{17})",
                        "'{}' is not an AMI id",
                        "use the image's id, such as ami-0123456789abcdef0",
                        "ami-0123456789abcdef0",
                    ),
                ],
            ],
            Field(strict=False, min_length=1),
        ]
        | None
    ) = None  # fmt: skip
    """An AMI id per region; the cluster's region must be one of them."""
    lookup: ImageLookup | None = None
    """Images found by owner and name, the newest for the cluster's Kubernetes version."""

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if (self.ami is None) == (self.lookup is None):
            raise refuse("needs either ami or lookup", "give ami: {REGION: ami-...}, or lookup: {org, baseOS}")
        return self


class ClusterSpec(SpecModel):
    """A workload cluster: its AWS network (built by Terraform) and its Cluster API machines."""

    # The command line names the cluster: a file may leave its name out.
    model_config = ConfigDict(title="cluster spec", json_schema_extra=lambda schema: schema.pop("required", None))

    name: Annotated[
        str,
        Form(
            r"[a-z][-a-z0-9]*[a-z0-9]",
            "'{}' is not a DNS-1123 label starting with a letter",
            _DNS_LABEL_FIX,
            "demo",
            MAX_NAME_LENGTH,
        ),
    ]
    """The cluster's name, NAME on the command line when left out; at most 22 characters, for AWS's names."""
    region: Region = "us-east-1"
    """The AWS region of the network and the machines."""
    kubernetes_version: Annotated[
        str,
        Form(
            rf"v1\.({'|'.join(map(str, SUPPORTED_MINORS))})\.[0-9]+",
            "'{}' is not a supported Kubernetes version",
            f"use {_SUPPORTED}, as vX.Y.Z",
            "v1.31.2",
        ),
    ] = "v1.31.2"
    """Kubernetes version of every machine: v1.30.x to v1.34.x, the minors the add-ons are pinned for."""
    network: Annotated[NetworkSpec, NullIs({})] = NetworkSpec()
    bastion: Annotated[BastionSpec, NullIs({})] = BastionSpec()
    control_plane: Annotated[ControlPlaneSpec, NullIs({})] = ControlPlaneSpec()
    workers: Annotated[tuple[WorkerPool, ...], Field(strict=False)] = (WorkerPool(name="default", replicas=2),)
    """Pools of worker machines, each a MachineDeployment per zone."""
    health_checks: Annotated[HealthChecks, NullIs({})] = HealthChecks()
    api_server: Annotated[ApiServerSpec, NullIs({})] = ApiServerSpec()
    pod_security: Annotated[PodSecurity, NullIs({})] = PodSecurity()
    network_policies: Annotated[NetworkPolicies, NullIs({})] = NetworkPolicies()
    image: ImageSpec | None = None
    """The machines' image; omitted: Cluster API AWS looks up its community images, not meant for production."""
    addons: Annotated[Addons, NullIs({})] = Addons()
    """What the cluster needs to become Ready, installed by Flux through the cluster's kubeconfig Secret."""
    ssh_key_name: Annotated[
        str,
        Form(r"[\t\n\r -~]{0,255}", "is not an EC2 key pair name", "use a key pair's name: 255 ASCII at most", "ops"),
    ] = ""
    """An EC2 key pair for SSH to the machines; empty: none."""
    tags: Annotated[
        dict[
            Annotated[YamlText, Field(min_length=1, max_length=128), AfterValidator(_own_tag_key)],
            Annotated[YamlText, Field(max_length=256), BeforeValidator(_number_text), TAG_VALUE],
        ],
        Field(max_length=MAX_USER_TAGS),
        NullIs({}),
        AfterValidator(lambda tags: dict(sorted(tags.items()))),
    ] = Field(default_factory=dict, examples=[{"team": "platform"}])
    """AWS tags for every resource of the cluster."""

    @field_validator("workers")
    @classmethod
    def _pools_named_once(cls, pools: tuple[WorkerPool, ...]) -> tuple[WorkerPool, ...]:
        names = [pool.name for pool in pools]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise refuse(f"two pools are named '{duplicate}'", "give each pool its own name")
        return pools

    @model_validator(mode="after")
    def _image_in_region(self) -> Self:
        ami = None if self.image is None else self.image.ami
        if ami is not None and self.region not in ami:
            raise refuse(f"has no AMI for {self.region}", f"add {self.region}: ami-...", "image", "ami")
        return self

    def fingerprint(self) -> str:
        return fingerprint(self.model_dump())

    @property
    def vpc_cidr(self) -> str:
        """The VPC CIDR that `allocation` placed; asked for before that, it is a defect of ours."""
        if self.network.cidr is None:
            raise PipelineError(f"cluster {self.name} has no VPC CIDR placed yet")
        return self.network.cidr


def parse(source: SpecSource, cli_name: str) -> ClusterSpec:
    """Every field checked, every default filled in, but the VPC CIDR when the spec has none."""
    cluster = ClusterSpec.read(source, name=cli_name)
    if cluster.name != cli_name:
        problem = f"'{cluster.name}' differs from the cluster named on the command line ('{cli_name}')"
        raise source.error("name", problem, "make them the same")
    return cluster


def check_name(name: str) -> None:
    """A cluster name the command line gives, before it becomes a path, a branch or a lock."""
    parse(SpecSource({"name": name}, {}, "(command line)"), name)


def json_schema() -> dict[str, Any]:
    """The spec as JSON Schema (Draft 2020-12), for editors and for checks in other tools."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **ClusterSpec.model_json_schema()}
