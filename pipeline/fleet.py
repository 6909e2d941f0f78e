"""The fleet repository's layout: created on first use, read back as trusted keys and clusters."""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline import atomic_file, founding, git, github, management, yaml_docs
from pipeline.config import PROJECT_ROOT, Settings, is_git_url
from pipeline.errors import BadInput, FleetFileInvalid
from pipeline.model import Manifest, Manifests
from pipeline.signing import Signer, export_public

MAIN = "main"
# refs/fleet/cidr/<block>: one ref per claimed VPC CIDR, its commit's subject names the cluster.
CIDR_CLAIMS = "fleet/cidr"
SYSTEM_DIR = "flux/system/"
SYSTEM_KUSTOMIZATION = "flux/system/kustomization.yaml"
KEYS_DIR = "flux/system/keys/"
CLUSTERS_DIR = "clusters/"
CLUSTER_FILE = "cluster.yaml"  # in each cluster's folder: its Cluster object, which records its VPC CIDR
# The annotation on each Cluster that the fleet-wide rules read its VPC CIDR from.
VPC_CIDR_ANNOTATION = "fleet.pipeline/vpc-cidr"
_CLUSTER_API = "cluster.x-k8s.io/"
FLUX_DIR = "flux/"  # what the management cluster's Flux applies, through the root Kustomization
FLUX_CLUSTERS_DIR = "flux/clusters/"
TRUSTED_KEYS_REF = "fleet-signing-keys"  # the Secret that spec.verify names
GITREPOSITORY_FILE = "flux/system/gitrepository.yaml"
# The Flux Kustomization that applies ./flux (and so itself, and every cluster's) from the verified source.
# Flux fetches over ssh or http(s) only: a fleet at a path on this machine holds this until --flux-url names one.
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
# The fleet's own settings, reviewed and signed like everything else on main.
SETTINGS_FILE = "fleet.yaml"
# The local target has no management cluster but this machine.
LOCAL_MANAGEMENT_CIDRS = ("127.0.0.1/32",)
FLEET_WORKFLOW_TEMPLATE = PROJECT_ROOT / "templates" / "fleet" / "verify.yml"

_README = """\
# Fleet

This repository is the desired state of the fleet's workload clusters. Nobody applies it
by hand: the management cluster's Flux pulls it and applies what it finds on `main`.

- `clusters/<name>/`: one workload cluster's Cluster API objects and its `kustomization.yaml`.
- `flux/clusters/<name>.yaml`: the Flux `Kustomization` that applies `./clusters/<name>`.
- `flux/system/`: the `GitRepository` "fleet" (namespace flux-system, branch `main`), the
  Secret `{secret}` built from `flux/system/keys/*.asc`, and in `health.yaml` the Provider
  and Alert that post each cluster's health as a commit status. Set the
  GitRepository's `spec.url` and the Provider's `spec.address` to this repository's address
  where they hold a placeholder, and create the Secret `{token}` (key `token`: a GitHub token
  that may write commit statuses).
- `flux/management/`: the management cluster's own desired state. cert-manager and the Cluster API
  Operator (Helm releases), then the Cluster API providers it installs (core, kubeadm bootstrap and
  control plane, AWS), pinned to the versions the pipeline renders for; `verify` reports any other.
  CAPA's AWS credentials come from the Secret `capa-variables` (namespace capa-system), never from git.
- `flux/flux-system/`: where `flux bootstrap git --path=./flux` writes Flux itself. `gotk-sync.yaml` holds
  the root Flux Kustomization, which applies `./flux`, as bootstrap writes it; kustomization.yaml, which
  bootstrap keeps, makes bootstrap's GitRepository verify signatures like the fleet's own.

## Settings and exceptions

`fleet.yaml` lists the management cluster's egress CIDRs (`managementCluster.egressCIDRs`): every cluster's
API load balancer admits them, and nothing else but what a cluster's spec lists. `policy-exceptions.yaml`
holds the reviewed exceptions to the security policy, each with a rule, a cluster, a reason and an expiry.

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


def ensure_fleet(settings: Settings, signer: Signer) -> founding.Founded:
    """The fleet at settings.fleet, founded with its Flux layout by a signed first commit when the remote is empty,
    adopted as it is when it holds a fleet already; a remote that holds anything else is refused.

    Any remote: a path (created, as a bare repository, when it does not exist), file://, ssh or https. Of runs
    that found one remote at the same moment, one first commit lands and every run ends with that fleet.
    """

    def first_files() -> dict[str, str]:
        return initial_files(
            export_public(signer),
            signer.fingerprint,
            forge_repository_url(settings),
            initial_management_cidrs(settings),
            flux_url(settings),
        )

    return founding.found(settings.fleet, first_files, _initial_message(signer), signer, _lacks_layout)


def flux_url(settings: Settings) -> str:
    """What the GitRepository fetches: --flux-url (PIPELINE_FLUX_URL) when given, else the fleet's own address."""
    return settings.flux_url or founding.source_url(settings.fleet, PLACEHOLDER_URL)


def _lacks_layout(checkout: git.Checkout, rev: str) -> str | None:
    """What a remote's main at `rev` lacks of a fleet (its Flux source and a trusted key); None when it has them."""
    if git.read_file(checkout, rev, GITREPOSITORY_FILE) is None or not keys_at(checkout, rev):
        return f"has no {GITREPOSITORY_FILE} with trusted keys in {KEYS_DIR}"
    return None


def initial_files(
    public_key: str,
    fingerprint: str,
    forge_url: str | None = None,
    management_cidrs: Sequence[str] = (),
    source_url: str = PLACEHOLDER_URL,
) -> dict[str, str]:
    """The fleet's first commit: README, its settings, its verify workflow, the Flux source verifying signatures
    (fetched from `source_url`) and the root Flux Kustomization applying ./flux from it, one trusted key, and the
    notifications that report each cluster's health back to the forge."""
    key_file = f"keys/{fingerprint}.asc"
    return {
        "README.md": _README.format(secret=TRUSTED_KEYS_REF, token=FORGE_TOKEN_REF),
        SETTINGS_FILE: _SETTINGS.format(cidrs=json.dumps(sorted(management_cidrs))),
        FLEET_WORKFLOW: FLEET_WORKFLOW_TEMPLATE.read_text(encoding="utf-8"),
        GITREPOSITORY_FILE: _GITREPOSITORY.format(url=json.dumps(source_url), secret=TRUSTED_KEYS_REF),
        HEALTH_FILE: _HEALTH.format(
            address=forge_url or PLACEHOLDER_FORGE_URL, token=FORGE_TOKEN_REF, prefix=HEALTH_CONTEXT_PREFIX
        ),
        SYSTEM_KUSTOMIZATION: system_kustomization([key_file]),
        f"flux/system/{key_file}": public_key,
        **management.files(TRUSTED_KEYS_REF, source_url),
    }


def initial_management_cidrs(settings: Settings) -> tuple[str, ...]:
    """What a new fleet's fleet.yaml lists: PIPELINE_MANAGEMENT_CIDRS, or on the local target this machine."""
    if settings.management_cidrs:
        return settings.management_cidrs
    return LOCAL_MANAGEMENT_CIDRS if settings.target == "local" else ()


def management_cidrs(checkout: git.Checkout, ref: str = MAIN) -> tuple[str, ...]:
    """The management cluster's egress CIDRs, which every cluster's API load balancer admits, from fleet.yaml on `ref`.

    None listed is refused: no cluster's API server would be reachable by the controllers that build it.
    """
    text = git.read_file(checkout, ref, SETTINGS_FILE)
    fix = (
        f"list the management cluster's egress addresses under managementCluster.egressCIDRs in {SETTINGS_FILE} on main"
    )
    try:
        data = yaml.safe_load(text) if text is not None else None
    except yaml.YAMLError as err:
        raise FleetFileInvalid(f"{SETTINGS_FILE} is not YAML: {' '.join(str(err).split())}") from None
    management = data.get("managementCluster") if isinstance(data, dict) else None
    listed = management.get("egressCIDRs") if isinstance(management, dict) else None
    if not listed or not isinstance(listed, list):
        raise FleetFileInvalid(f"{SETTINGS_FILE}: no managementCluster.egressCIDRs; {fix}")
    for index, cidr in enumerate(listed):
        where = f"{SETTINGS_FILE} managementCluster.egressCIDRs[{index}]"
        try:
            network = ipaddress.IPv4Network(str(cidr))
        except ValueError:
            raise FleetFileInvalid(f"{where}: '{cidr}' is not an IPv4 CIDR; write it as 203.0.113.7/32") from None
        if network.prefixlen == 0:
            raise FleetFileInvalid(
                f"{where}: {cidr} is the whole internet; list the management cluster's own addresses"
            )
    return tuple(sorted({str(ipaddress.IPv4Network(str(cidr))) for cidr in listed}))


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


@contextmanager
def session(settings: Settings) -> Iterator[git.Checkout]:
    """The fleet as one command sees it: cloned once, read from, and written through, then removed.

    Every write fetches first, so a command that runs long still races on what the remote holds now.
    """
    with git.clone(settings.fleet, also=[CIDR_CLAIMS], cache_dir=settings.state_dir / "fleet") as checkout:
        yield checkout


@contextmanager
def reading(settings: Settings) -> Iterator[git.Checkout | None]:
    """The fleet's session for a command that only reads it; None while there is no fleet yet."""
    if not exists(settings):
        yield None
        return
    with session(settings) as checkout:
        yield checkout


def trusted_keys(checkout: git.Checkout, ref: str = MAIN) -> tuple[str, ...]:
    """The ASCII-armored public keys the fleet trusts on branch `ref`, by file name."""
    return keys_at(checkout, git.upstream(ref))


def keys_at(checkout: git.Checkout, rev: str) -> tuple[str, ...]:
    files = git.read_tree(checkout, rev, KEYS_DIR)
    return tuple(files[path] for path in sorted(files) if path.endswith(".asc"))


def key_fingerprints_at(checkout: git.Checkout, rev: str) -> frozenset[str]:
    """The fingerprints of the keys trusted at `rev`, which name their files; no key is read."""
    listed = git.list_files(checkout, rev, KEYS_DIR)
    return frozenset(path.rsplit("/", 1)[-1].removesuffix(".asc").upper() for path in listed if path.endswith(".asc"))


def system_kustomization(key_files: Iterable[str]) -> str:
    """flux/system/kustomization.yaml building the trusted-keys Secret from `key_files`.

    The paths are relative to flux/system/ and listed sorted, so the same keys always
    give the same file.
    """
    files = "".join(f"      - {path}\n" for path in sorted(key_files))
    return _KUSTOMIZATION.format(secret=TRUSTED_KEYS_REF, files=files)


@dataclass(frozen=True)
class Neighbour:
    """What the fleet-wide rules need of a cluster: its name, and the VPC CIDR its Cluster records."""

    cluster: str
    cidr: str | None


def neighbours(checkout: git.Checkout, ref: str = MAIN) -> tuple[Neighbour, ...]:
    """Every cluster on branch `ref`, by name, read from its Cluster object's file alone."""
    rev = git.head_of(checkout, ref)
    return () if rev is None else neighbours_at(checkout, rev)


def neighbours_at(checkout: git.Checkout, rev: str) -> tuple[Neighbour, ...]:
    """Every cluster at commit `rev`, by name. A cluster.yaml read once is known by its object id from then on:
    a run reads only those that changed since the last."""
    ids = git.blob_ids(checkout, rev, CLUSTERS_DIR, CLUSTER_FILE)
    cache = None if checkout.cache_dir is None else checkout.cache_dir / "recorded-cidrs.json"
    known = _read_cache(cache)
    missing = sorted({sha for sha in ids.values() if sha is not None and sha not in known})
    known.update({sha: recorded_cidr(text) for sha, text in git.read_blobs(checkout, missing).items()})
    current = {sha: known[sha] for sha in ids.values() if sha is not None}
    if cache is not None and (missing or len(current) != len(known)):
        _write_cache(cache, current)
    return tuple(Neighbour(name, None if sha is None else known[sha]) for name, sha in sorted(ids.items()))


def _read_cache(path: Path | None) -> dict[str, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
    except (OSError, ValueError):
        return {}  # no cache, or one cut short: everything is read again
    return {str(k): v if isinstance(v, str) else None for k, v in data.items()} if isinstance(data, dict) else {}


def _write_cache(path: Path, entries: dict[str, str | None]) -> None:
    """Replaced whole, so concurrent runs each leave a complete cache; an unwritable one only costs reads."""
    try:
        atomic_file.write(path, json.dumps(entries, sort_keys=True).encode("utf-8"))
    except OSError:
        return


def own_files(checkout: git.Checkout, name: str, ref: str = MAIN) -> dict[str, str]:
    """Cluster `name`'s files on branch `ref`, by path: its folder and its Flux Kustomization."""
    rev = git.head_of(checkout, ref)
    return {} if rev is None else own_files_at(checkout, rev, name)


def own_files_at(checkout: git.Checkout, rev: str, name: str) -> dict[str, str]:
    folder, kustomization = owned_paths(name)
    files = git.read_tree(checkout, rev, folder)
    found = git.read_file(checkout, rev, kustomization)
    return files if found is None else {**files, kustomization: found}


def cluster_at(checkout: git.Checkout, rev: str, name: str) -> Manifests:
    """One cluster's files at commit `rev`, as its manifests."""
    files = own_files_at(checkout, rev, name)
    return Manifests(name, tuple(Manifest(path, files[path]) for path in sorted(files)))


def recorded_cidr(text: str | None) -> str | None:
    """The VPC CIDR annotation of the Cluster object in a cluster's cluster.yaml; None when there is none."""
    return cluster_annotations(text).get(VPC_CIDR_ANNOTATION)


def cluster_annotations(text: str | None) -> dict[str, str]:
    """The annotations of the Cluster API Cluster object in a cluster.yaml; none when it has none."""
    try:
        docs = yaml_docs.documents(text or "")
    except yaml_docs.Error:
        return {}  # validation reports broken files; readers of the record take what they can
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Cluster":
            continue
        if not str(doc.get("apiVersion", "")).startswith(_CLUSTER_API):
            continue
        metadata = doc.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        return {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {}
    return {}


def exists(settings: Settings) -> bool:
    """Whether there is a fleet to read: a URL is taken to exist, a path must."""
    return is_git_url(settings.fleet) or Path(settings.fleet).exists()


def cidr_claims(checkout: git.Checkout) -> dict[str, str]:
    """VPC CIDRs claimed in the fleet now, by the cluster that holds each; claims outlive review."""
    return {_cidr_of(key): holder for key, holder in git.claims(checkout, CIDR_CLAIMS).items()}


def claim_cidr(checkout: git.Checkout, cidr: str, cluster: str) -> str:
    """Claim `cidr` for `cluster` across every run on every machine; the cluster holding it after.

    A claim the cluster holds already is kept as it is: claims are only ever made, or released
    by their holder. A cluster's other claims are released once it holds this one (its CIDR changed).
    """
    if git.claims(checkout, CIDR_CLAIMS).get(_claim_key(cidr)) == cluster:
        return cluster
    holder = git.claim(checkout, CIDR_CLAIMS, _claim_key(cidr), cluster)
    if holder == cluster:
        for key, other in git.claims(checkout, CIDR_CLAIMS).items():
            if other == cluster and key != _claim_key(cidr):
                git.unclaim(checkout, CIDR_CLAIMS, key)
    return holder


def release_cidrs(checkout: git.Checkout, cluster: str) -> None:
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


def _initial_message(signer: Signer) -> str:
    return (
        "fleet: create the repository and its Flux layout\n\n"
        "Flux applies only commits signed by a key in flux/system/keys/.\n\n"
        f"Signing-Key: {signer.fingerprint}\n"
    )


_SETTINGS = """\
# The fleet's own settings. A change here is a reviewed, signed commit like any other.
managementCluster:
  # Where the management cluster's controllers reach workload API servers from (its NAT
  # gateways' addresses as /32s): every cluster's API load balancer admits these.
  egressCIDRs: {cidrs}
"""

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
  # The credentials that `flux bootstrap` stores for the same repository (its deploy key).
  secretRef:
    name: flux-system
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
