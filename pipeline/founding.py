"""A repository's signed first commit, made once on whatever remote holds it: a local path, file://, ssh or https.

The commit is built and signed in a repository of its own, then pushed as main without force. The remote decides
which push creates main, so of runs that found one empty remote at the same moment exactly one wins; the others
read what it pushed and adopt it. A remote that already holds something is never written to.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import git
from pipeline.config import is_git_url
from pipeline.errors import FleetRemoteOccupied, PushRejected
from pipeline.signing import Signer

MAIN = "main"
_FIX = "give --fleet an empty repository (on GitHub: created without a README or licence), or one that holds a fleet"

# What a remote's main must hold to be adopted: given a checkout and main's head, None when it will do,
# else what it lacks, said after "main".
Judge = Callable[[git.Checkout, str], str | None]


@dataclass(frozen=True)
class Founded:
    remote: str
    commit: str  # main's head: the first commit when this run made it
    created: bool  # False: the remote held what `Judge` accepts already, and nothing was pushed


def found(remote: str, files: Callable[[], Mapping[str, str]], message: str, signer: Signer, judge: Judge) -> Founded:
    """Make `files` the first commit on main of `remote`, signed by `signer`, if the remote is empty; else adopt it.

    A local path (or file:// URL) that does not exist becomes a bare repository first, renamed into place once
    made so that no run sees half of one. The commit is signed before anything is created or pushed.
    """
    path = _local_path(remote)
    held = {} if path is not None and not path.exists() else git.remote_refs(remote)
    with git.scratch(remote) as checkout:
        if held:
            return _adopted(checkout, held, judge)
        tree = git.tree_with(checkout, git.EMPTY_TREE, (), files())
        first = git.commit_tree(checkout, MAIN, tree, (), message, signer=signer)
        if path is not None:
            _create_bare(path)
        try:
            git.push(checkout, MAIN)
        except PushRejected:
            # Another run's first commit reached the remote first: that one is the fleet's.
            return _adopted(checkout, git.remote_refs(remote), judge)
    return Founded(remote, first, created=True)


def _adopted(checkout: git.Checkout, held: Mapping[str, str], judge: Judge) -> Founded:
    if f"refs/heads/{MAIN}" not in held:
        refs = sorted(ref for ref in held if ref != "HEAD")
        named = ", ".join(refs[:3]) + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")
        raise FleetRemoteOccupied(f"{checkout.remote} holds {named} but no {MAIN} branch, so no fleet; {_FIX}")
    head = git.fetch_head_of(checkout, MAIN)
    lacking = judge(checkout, head)
    if lacking is not None:
        raise FleetRemoteOccupied(f"{checkout.remote}: {MAIN} {lacking}, so it holds no fleet; {_FIX}")
    return Founded(checkout.remote, head, created=False)


def _create_bare(path: Path) -> None:
    """An empty bare repository at `path` unless one is there: made beside it, then renamed into place."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        git.init_bare(building)
        try:
            os.rename(building, path)
        except OSError:
            # Another run created it first: theirs stands, and the push decides whose first commit it holds.
            if not path.exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _local_path(remote: str) -> Path | None:
    """Where on this machine `remote` lives: a path, or a file:// URL's; None for a remote reached over the network."""
    if not is_git_url(remote):
        return Path(remote)
    parts = urllib.parse.urlsplit(remote)
    return Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else None


def source_url(remote: str, placeholder: str) -> str:
    """The address Flux's GitRepository fetches `remote` from: an ssh or https remote as it is (scp-like
    `git@host:path` written as the ssh:// URL Flux requires, credentials left out). Flux cannot fetch a path on
    this machine, nor file://, which its CRD refuses: those get `placeholder` until --flux-url names the address."""
    if remote.startswith("git@") and "://" not in remote:
        host, _, path = remote.partition(":")
        return f"ssh://{host}/{path.lstrip('/')}"
    parts = urllib.parse.urlsplit(remote)
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https", "ssh") or not host:
        return placeholder
    # ssh names its user in the URL; over http a user (or token) belongs in the GitRepository's secretRef.
    user = f"{parts.username}@" if parts.scheme == "ssh" and parts.username else ""
    return urllib.parse.urlunsplit((parts.scheme, f"{user}{host}", parts.path, "", ""))
