"""The fleet repository's layout: created on first use, read back as trusted keys and clusters."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from pipeline import git, github
from pipeline.config import PROJECT_ROOT, Settings, is_git_url
from pipeline.errors import BadInput
from pipeline.model import Manifest, Manifests
from pipeline.signing import Signer, export_public

MAIN = "main"
# refs/fleet/cidr/<block>: one ref per claimed VPC CIDR, its commit's subject names the cluster.
CIDR_CLAIMS = "fleet/cidr"
SYSTEM_DIR = "flux/system/"
SYSTEM_KUSTOMIZATION = "flux/system/kustomization.yaml"
KEYS_DIR = "flux/system/keys/"
CLUSTERS_DIR = "clusters/"
FLUX_CLUSTERS_DIR = "flux/clusters/"
TRUSTED_KEYS_REF = "fleet-signing-keys"  # the Secret that spec.verify names
# Flux needs a URL it can reach; a fleet created here has none until it is pushed somewhere.
PLACEHOLDER_URL = "ssh://git@git.example.invalid/fleet.git"
# Flux's notification-controller posts each Flux Kustomization's health on the commit it applied,
# under this prefix and the Kustomization's name: `status` and `list` read it back from there.
HEALTH_FILE = "flux/system/health.yaml"
HEALTH_CONTEXT_PREFIX = "fleet/"
FORGE_TOKEN_REF = "fleet-forge-token"  # noqa: S105 - the name of the Secret, not a token
PLACEHOLDER_FORGE_URL = "https://github.example.invalid/owner/fleet"
# The fleet's own pull request check, which runs `verify`. Flux's source-controller leaves
# .github/ out of what it applies, and the fleet's checks read clusters/ and flux/ only.
FLEET_WORKFLOW = ".github/workflows/verify.yml"
FLEET_WORKFLOW_TEMPLATE = PROJECT_ROOT / "templates" / "fleet" / "verify.yml"

_README = """\
# Fleet

This repository is the desired state of the fleet's workload clusters. Nobody applies it
by hand: the management cluster's Flux pulls it and applies what it finds on `main`.

- `clusters/<name>/`: one workload cluster's Cluster API objects and its `kustomization.yaml`.
- `flux/clusters/<name>.yaml`: the Flux `Kustomization` that applies `./clusters/<name>`.
- `flux/system/`: the `GitRepository` "fleet" (namespace flux-system, branch `main`), the
  Secret `{secret}` built from `flux/system/keys/*.asc`, and in `health.yaml` the Provider
  and Alert that post each cluster's health as a commit status. Point the management cluster's
  root Flux Kustomization at `./flux`, set the GitRepository's `spec.url` and the Provider's
  `spec.address` to this repository's address where they hold a placeholder, and create the
  Secret `{token}` (key `token`: a GitHub token that may write commit statuses).

## Signed commits only

The GitRepository sets `spec.verify` (mode HEAD): Flux applies `main` only when its head
commit is signed by one of the OpenPGP public keys in `flux/system/keys/`, each named by its
fingerprint. Those files are the fleet's trusted keys; adding one is a reviewed change.

The pipeline commits each cluster on a review branch `cluster/<name>`, signed, and checks
the signature against these keys before pushing. Approving a cluster fast-forwards `main`
to that signed commit (or signs a merge when `main` has moved). Merges made in a forge's web
UI are signed by the forge's own key, which is not trusted here, so Flux would not apply them.

A key whose user id says LOCAL ONLY was generated on a workstation for trying the pipeline
out; it must never be trusted by a production fleet.
"""


def ensure_fleet(settings: Settings, signer: Signer) -> None:
    """Create the fleet as a local bare repository with its Flux layout, unless it exists.

    The repository is built beside its final path and renamed into place once its signed
    first commit is pushed, so a failure never leaves a half-made fleet behind.
    """
    if is_git_url(settings.fleet):
        return
    final = Path(settings.fleet)
    if final.exists():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        git.init_bare(building)
        with git.clone(str(building)) as checkout:
            git.switch(checkout, MAIN, None)
            files = initial_files(export_public(signer), signer.fingerprint, forge_repository_url(settings))
            git.write_files(checkout, files)
            git.stage_all(checkout)
            git.commit(checkout, _initial_message(signer), signer)
            git.push(checkout, MAIN)
        try:
            os.rename(building, final)
        except OSError:
            # Another run created the fleet first: theirs stands, ours is discarded.
            if not final.exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def initial_files(public_key: str, fingerprint: str, forge_url: str | None = None) -> dict[str, str]:
    """The fleet's first commit: README, its verify workflow, the Flux source verifying signatures, one trusted key,
    and the notifications that report each cluster's health back to the forge."""
    key_file = f"keys/{fingerprint}.asc"
    return {
        "README.md": _README.format(secret=TRUSTED_KEYS_REF, token=FORGE_TOKEN_REF),
        FLEET_WORKFLOW: FLEET_WORKFLOW_TEMPLATE.read_text(encoding="utf-8"),
        "flux/system/gitrepository.yaml": _GITREPOSITORY.format(url=PLACEHOLDER_URL, secret=TRUSTED_KEYS_REF),
        HEALTH_FILE: _HEALTH.format(
            address=forge_url or PLACEHOLDER_FORGE_URL, token=FORGE_TOKEN_REF, prefix=HEALTH_CONTEXT_PREFIX
        ),
        SYSTEM_KUSTOMIZATION: system_kustomization([key_file]),
        f"flux/system/{key_file}": public_key,
    }


def forge_repository_url(settings: Settings) -> str | None:
    """The fleet repository's web address on GitHub, where Flux posts commit statuses; None when it has none."""
    repo = settings.github.repo
    if repo is None and is_git_url(settings.fleet):
        try:
            repo = "/".join(github.repo_from_remote(settings.fleet))
        except BadInput:
            return None
    if repo is None:
        return None
    api = urllib.parse.urlsplit(settings.github.api_url)
    # api.github.com serves github.com; GitHub Enterprise serves its API under /api/v3 of its own host.
    host = "github.com" if api.netloc == "api.github.com" else api.netloc
    return f"https://{host}/{repo}"


def trusted_keys(settings: Settings, ref: str = MAIN) -> tuple[str, ...]:
    """The ASCII-armored public keys the fleet trusts on branch `ref`, by file name."""
    with git.clone(settings.fleet) as checkout:
        return keys_at(checkout, git.upstream(ref))


def keys_at(checkout: git.Checkout, rev: str) -> tuple[str, ...]:
    files = git.read_tree(checkout, rev, KEYS_DIR)
    return tuple(files[path] for path in sorted(files) if path.endswith(".asc"))


def system_kustomization(key_files: Iterable[str]) -> str:
    """flux/system/kustomization.yaml building the trusted-keys Secret from `key_files`.

    The paths are relative to flux/system/ and listed sorted, so the same keys always
    give the same file.
    """
    files = "".join(f"      - {path}\n" for path in sorted(key_files))
    return _KUSTOMIZATION.format(secret=TRUSTED_KEYS_REF, files=files)


def cluster_manifests(settings: Settings, ref: str = MAIN) -> tuple[Manifests, ...]:
    """Every cluster on branch `ref` (none when the branch does not exist), by name."""
    with git.clone(settings.fleet) as checkout:
        rev = git.head_of(checkout, ref)
        return () if rev is None else clusters_at(checkout, rev)


def clusters_at(checkout: git.Checkout, rev: str) -> tuple[Manifests, ...]:
    """Every cluster folder at commit `rev`, with its Flux Kustomization when there is one, by name."""
    files = git.read_tree(checkout, rev, CLUSTERS_DIR)
    flux = git.read_tree(checkout, rev, FLUX_CLUSTERS_DIR)
    names = sorted({path.split("/")[1] for path in files if path.count("/") >= 2})
    return tuple(_cluster(name, files, flux) for name in names)


def exists(settings: Settings) -> bool:
    """Whether there is a fleet to read: a URL is taken to exist, a path must."""
    return is_git_url(settings.fleet) or Path(settings.fleet).exists()


def cidr_claims(settings: Settings) -> dict[str, str]:
    """VPC CIDRs claimed in the fleet, by the cluster that holds each; claims outlive review."""
    with git.clone(settings.fleet) as checkout:
        return {_cidr_of(key): holder for key, holder in git.claims(checkout, CIDR_CLAIMS).items()}


def claim_cidr(settings: Settings, cidr: str, cluster: str) -> str:
    """Claim `cidr` for `cluster` across every run on every machine; the cluster holding it after.

    A cluster's other claims are released once it holds this one (its CIDR changed).
    """
    with git.clone(settings.fleet) as checkout:
        holder = git.claim(checkout, CIDR_CLAIMS, _claim_key(cidr), cluster)
        if holder == cluster:
            for key, other in git.claims(checkout, CIDR_CLAIMS).items():
                if other == cluster and key != _claim_key(cidr):
                    git.unclaim(checkout, CIDR_CLAIMS, key)
        return holder


def release_cidrs(settings: Settings, cluster: str) -> None:
    with git.clone(settings.fleet) as checkout:
        for key, holder in git.claims(checkout, CIDR_CLAIMS).items():
            if holder == cluster:
                git.unclaim(checkout, CIDR_CLAIMS, key)


def _claim_key(cidr: str) -> str:
    return cidr.replace("/", "-")


def _cidr_of(key: str) -> str:
    address, _, prefix = key.rpartition("-")
    return f"{address}/{prefix}"


def owned_paths(name: str) -> tuple[str, str]:
    """What one cluster owns in the fleet: its folder (a prefix) and its Flux Kustomization."""
    return f"{CLUSTERS_DIR}{name}/", f"{FLUX_CLUSTERS_DIR}{name}.yaml"


def _cluster(name: str, files: dict[str, str], flux: dict[str, str]) -> Manifests:
    folder, kustomization = owned_paths(name)
    mine = {path: content for path, content in files.items() if path.startswith(folder)}
    if kustomization in flux:
        mine[kustomization] = flux[kustomization]
    return Manifests(name, tuple(Manifest(path, mine[path]) for path in sorted(mine)))


def _initial_message(signer: Signer) -> str:
    return (
        "fleet: create the repository and its Flux layout\n\n"
        "Flux applies only commits signed by a key in flux/system/keys/.\n\n"
        f"Signing-Key: {signer.fingerprint}\n"
    )


_GITREPOSITORY = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: fleet
  namespace: flux-system
spec:
  interval: 1m
  ref:
    branch: main
  url: {url}
  verify:
    mode: HEAD
    secretRef:
      name: {secret}
"""

_HEALTH = """\
# Flux reports each Kustomization's health (a cluster built, its add-ons Ready) to the forge as a
# commit status on the commit it applied. The token Secret is created once, at bootstrap.
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: fleet-forge
  namespace: flux-system
spec:
  type: github
  address: {address}
  secretRef:
    name: {token}
  commitStatusExpr: "'{prefix}' + event.involvedObject.name"
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata:
  name: fleet-health
  namespace: flux-system
spec:
  providerRef:
    name: fleet-forge
  eventSeverity: info
  eventSources:
    - kind: Kustomization
      name: "*"
"""

_KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - gitrepository.yaml
  - health.yaml
secretGenerator:
  - name: {secret}
    namespace: flux-system
    files:
{files}    options:
      disableNameSuffixHash: true
"""
