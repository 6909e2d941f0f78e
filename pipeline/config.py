"""Where things live and which target to use, from flags and the environment, decided once."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.model import Target

# A lock younger than this may be held by a run alive on another machine, which this one cannot
# see: Terraform holds the lock for the whole of one plan or apply, and the stacks' longest on AWS
# (NAT gateways, interface endpoints, their deletion) take minutes, not a quarter of an hour. An
# older lock's run is taken for dead and released on request; a younger one only with --force.
STALE_LOCK_AFTER = timedelta(minutes=15)
STALE_LOCK_TEXT = f"{int(STALE_LOCK_AFTER.total_seconds() // 60)} minutes"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FLEET = "fleet.git"
DEFAULT_STATE_DIR = ".pipeline"
DEFAULT_ACCOUNT_REGION = "us-east-1"
PASSPHRASE_ENV = "PIPELINE_GPG_PASSPHRASE"  # noqa: S105 - the name of the variable, not a value
FLUX_URL_ENV = "PIPELINE_FLUX_URL"
_FLUX_SCHEMES = ("ssh", "https", "http")


@dataclass(frozen=True)
class GitHubSettings:
    """Where pull requests are opened; the token never appears in a repr, a log or a file."""

    api_url: str
    repo: str | None  # owner/name; parsed from the fleet remote when None
    token: str | None = field(repr=False)
    labels: tuple[str, ...]
    reviewers: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    target: Target
    state_dir: Path
    fleet: str  # a path or a git URL
    crds_dir: Path | None  # offline schemas; otherwise the pinned download cache is used
    crds_mirror: str | None  # where the pinned CRDs are downloaded from, laid out like the cache
    aws_endpoint: str | None  # an already running AWS-compatible endpoint (local target)
    state_bucket: str | None  # Terraform state bucket; derived from the account when None
    signing_key: str | None  # fingerprint of the key that signs fleet commits (aws target)
    signing_passphrase: str | None = field(repr=False)  # that key's passphrase, when it has one
    provider_mirror: Path | None  # a Terraform provider filesystem mirror, configured explicitly
    plugin_cache: Path  # shared by every cluster's Terraform work dir
    github: GitHubSettings
    project_root: Path = PROJECT_ROOT
    # IAM is global to an account, so the account's stack keeps one state wherever the clusters keep theirs:
    # in this region, in this bucket (derived from the account when None).
    account_region: str = DEFAULT_ACCOUNT_REGION
    account_state_bucket: str | None = None
    # The management cluster's egress CIDRs, written into a new fleet's fleet.yaml.
    management_cidrs: tuple[str, ...] = ()
    # Where the management cluster's Flux fetches the fleet from, when not at the address the pipeline uses.
    flux_url: str | None = None

    @property
    def templates_dir(self) -> Path:
        return self.project_root / "templates"

    @property
    def terraform_dir(self) -> Path:
        return self.project_root / "terraform"

    @property
    def gnupg_home(self) -> Path:
        """The local-only signing key's GnuPG home (local target)."""
        return self.state_dir / "gnupg"

    @property
    def crds_cache(self) -> Path:
        return self.state_dir / "crds"

    @property
    def compiled_templates(self) -> Path:
        return self.state_dir / "templates"

    @property
    def schemas_cache(self) -> Path:
        """The CRD schemas as parsed, by the content they were parsed from."""
        return self.state_dir / "schemas"

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "runs"

    def terraform_work_dir(self, cluster: str) -> Path:
        return self.state_dir / "terraform" / cluster


def load_settings(
    env: Mapping[str, str],
    cwd: Path,
    *,
    target: str | None = None,
    fleet: str | None = None,
    github_repo: str | None = None,
    flux_url: str | None = None,
) -> Settings:
    chosen = target or env.get("PIPELINE_TARGET", "local")
    if chosen not in ("local", "aws"):
        raise BadInput(f"--target '{chosen}' is not a target; use 'local' or 'aws'")
    fleet_location = fleet or env.get("PIPELINE_FLEET") or str(cwd / DEFAULT_FLEET)
    crds = env.get("PIPELINE_CRDS_DIR")
    mirror = env.get("PIPELINE_PROVIDER_MIRROR")
    cache_home = Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME", str(cwd))) / ".cache")
    plugin_cache = env.get("PIPELINE_PLUGIN_CACHE") or str(cache_home / "fleet-pipeline" / "plugins")
    return Settings(
        target="local" if chosen == "local" else "aws",
        state_dir=state_dir(env, cwd),
        fleet=_absolute_if_path(fleet_location, cwd),
        crds_dir=(cwd / crds).resolve() if crds else None,
        crds_mirror=env.get("PIPELINE_CRDS_MIRROR") or None,
        aws_endpoint=env.get("PIPELINE_AWS_ENDPOINT") or None,
        state_bucket=env.get("PIPELINE_STATE_BUCKET") or None,
        signing_key=env.get("PIPELINE_SIGNING_KEY") or None,
        signing_passphrase=env.get(PASSPHRASE_ENV) or None,
        provider_mirror=(cwd / mirror).resolve() if mirror else None,
        plugin_cache=(cwd / plugin_cache).resolve(),
        account_region=env.get("PIPELINE_ACCOUNT_REGION") or DEFAULT_ACCOUNT_REGION,
        account_state_bucket=env.get("PIPELINE_ACCOUNT_STATE_BUCKET") or None,
        management_cidrs=_names(env.get("PIPELINE_MANAGEMENT_CIDRS", "")),
        flux_url=_flux_url(flux_url, "--flux-url") or _flux_url(env.get(FLUX_URL_ENV), FLUX_URL_ENV),
        github=GitHubSettings(
            api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
            repo=github_repo or env.get("PIPELINE_GITHUB_REPO") or None,
            token=env.get("GITHUB_TOKEN") or None,
            labels=_names(env.get("PIPELINE_PR_LABELS", "")),
            reviewers=_names(env.get("PIPELINE_PR_REVIEWERS", "")),
        ),
    )


def _names(listed: str) -> tuple[str, ...]:
    return tuple(sorted({name.strip() for name in listed.split(",") if name.strip()}))


def _flux_url(value: str | None, given_as: str) -> str | None:
    """A URL Flux's GitRepository accepts (its CRD admits ssh, https and http only), without credentials in it."""
    if not value:
        return None
    example = "e.g. ssh://git@github.com/acme/fleet.git"
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme not in _FLUX_SCHEMES or any(c.isspace() for c in value):
        raise BadInput(
            f"{given_as} '{value}' is not a URL Flux can fetch from; give an ssh:// or https:// URL ({example})"
        )
    if parts.password is not None or (parts.scheme != "ssh" and parts.username is not None):
        # The URL is committed to the fleet: Flux reads credentials from the GitRepository's secretRef instead.
        raise BadInput(f"{given_as} carries credentials; give the URL without them ({example})")
    return value


def state_dir(env: Mapping[str, str], cwd: Path) -> Path:
    """Where local state lives: PIPELINE_STATE_DIR, else .pipeline/ under the working directory."""
    return Path(env.get("PIPELINE_STATE_DIR") or cwd / DEFAULT_STATE_DIR).resolve()


def is_git_url(location: str) -> bool:
    return "://" in location or location.startswith("git@")


def _absolute_if_path(location: str, cwd: Path) -> str:
    if is_git_url(location):
        return location
    return str((cwd / location).resolve())
