"""The commit stage: one cluster's manifests, or their removal, as a signed commit on its review branch."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline import fleet, git, journal
from pipeline.errors import BadInput
from pipeline.model import CommitResult, Manifests
from pipeline.signing import Signer, verify_commit

_TRAILER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_ADDED = (
    "The manifests of workload cluster {name}, for review on {branch}.\n"
    "Flux applies them once main points at a commit signed by a trusted key."
)
_REMOVED = (
    "Removes workload cluster {name}'s manifests, for review on {branch}.\n"
    "Once main points at it, Flux prunes the cluster's objects; delete-cluster {name}\n"
    "then destroys the cluster's network."
)


@dataclass(frozen=True)
class CommitCheckpoint(journal.Flat):
    """What a commit stage (new-cluster's commit, delete-cluster's removal) leaves in the run journal."""

    commit: str
    changed: bool

    @classmethod
    def of(cls, result: CommitResult) -> CommitCheckpoint:
        return cls(result.commit, result.changed)


def review_branch(name: str) -> str:
    return f"cluster/{name}"


def commit(
    manifests: Manifests,
    checkout: git.Checkout,
    signer: Signer,
    trailers: Mapping[str, str],
    summary: str,
) -> CommitResult:
    """Put exactly `manifests` on `cluster/<name>`, signed and verified, and push it."""
    name = manifests.cluster
    return _put(name, _owned_files(manifests), checkout, signer, _message(name, summary, _ADDED, trailers))


def remove(
    name: str,
    checkout: git.Checkout,
    signer: Signer,
    trailers: Mapping[str, str],
    summary: str,
) -> CommitResult:
    """Put main without any of cluster `name`'s files on `cluster/<name>`, signed and verified, and push it."""
    return _put(name, {}, checkout, signer, _message(name, summary, _REMOVED, trailers))


def _put(name: str, files: Mapping[str, str], checkout: git.Checkout, signer: Signer, message: str) -> CommitResult:
    """Make `cluster/<name>` main with exactly `files` as the cluster's own files (none: a removal).

    The branch grows from its remote head while main is part of it, and is rebuilt as one
    commit on top of main once main has moved on, replacing the old head only if nobody
    moved it meanwhile. Unchanged content commits and pushes nothing. The remote is read
    afresh first; the commit is made in the command's clone, without a work tree, and its
    signature checked against main's trusted keys before the push, the only write to the fleet.
    """
    branch = review_branch(name)
    git.fetch(checkout)
    main_head = git.head_of(checkout, fleet.MAIN)
    if main_head is None:
        raise BadInput(f"the fleet {checkout.remote} has no main branch; create it with its Flux layout first")
    old_head = git.head_of(checkout, branch)
    start = main_head
    if old_head is not None and git.is_ancestor(checkout, main_head, old_head):
        start = old_head
    tree = git.tree_with(checkout, start, sorted(owned_at(checkout, start, name) - set(files)), files)
    if tree == git.tree_of(checkout, start):
        return CommitResult(branch, start, changed=False, signer=signer.fingerprint)
    new_head = git.commit_tree(checkout, branch, tree, [start], message, signer=signer)
    verify_commit(checkout.path, new_head, fleet.keys_at(checkout, main_head))
    git.push(checkout, branch, lease=old_head)
    return CommitResult(branch, new_head, changed=True, signer=signer.fingerprint)


def owned_at(checkout: git.Checkout, rev: str, name: str) -> set[str]:
    """The paths cluster `name` has at `rev`: its folder's files and its Flux Kustomization."""
    folder, kustomization = fleet.owned_paths(name)
    paths = set(git.read_tree(checkout, rev, folder))
    if kustomization in git.read_tree(checkout, rev, fleet.FLUX_CLUSTERS_DIR):
        paths.add(kustomization)
    return paths


def _owned_files(manifests: Manifests) -> dict[str, str]:
    """The manifests by path, refusing any path outside what the cluster owns."""
    folder, kustomization = fleet.owned_paths(manifests.cluster)
    for manifest in manifests.files:
        inside = manifest.path.startswith(folder) and ".." not in manifest.path.split("/")
        if not (inside or manifest.path == kustomization):
            raise BadInput(
                f"manifest path '{manifest.path}' is outside cluster {manifests.cluster}'s "
                f"files ({folder}, {kustomization}); fix the templates"
            )
    return {manifest.path: manifest.content for manifest in manifests.files}


def _message(name: str, summary: str, about: str, trailers: Mapping[str, str]) -> str:
    """Subject, `about` (a template of {name} and {branch}) as the body, then the trailers sorted."""
    for key, value in trailers.items():
        if not _TRAILER_KEY.match(key) or "\n" in value:
            raise BadInput(f"commit trailer '{key}' must be a word and its value one line")
    lines = "".join(f"{key}: {value}\n" for key, value in sorted(trailers.items()))
    subject = " ".join(f"cluster {name}: {summary}".split())
    body = about.format(name=name, branch=review_branch(name))
    return f"{subject}\n\n{body}\n\n{lines}"
