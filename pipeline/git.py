"""The fleet repository through GitPython: throwaway clones, trees, signed commits, pushes."""

from __future__ import annotations

import errno
import io
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git as gitpython
from gitdb.base import IStream

from pipeline import signing
from pipeline.errors import GitConflict, GitError, PushRejected, SigningError

IDENTITY = ("Fleet Pipeline", "pipeline@local.invalid")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git knows it without storing it

# Written into every clone's own config, which outranks the user's: their settings must
# not change what is written or run (no hooks, no line-ending rewrites, OpenPGP through gpg).
_PINNED_CONFIG = (
    ("core", "hooksPath", "/dev/null"),
    ("core", "autocrlf", "false"),
    ("commit", "gpgSign", "false"),
    ("gpg", "format", "openpgp"),
    ("gpg", "program", "gpg"),
)
_ENV = {"GIT_TERMINAL_PROMPT": "0"}


@dataclass(frozen=True)
class Checkout:
    """A throwaway clone of the fleet remote; its remote's branches are `origin/<branch>`."""

    remote: str
    path: Path
    repo: gitpython.Repo
    # Where what is read out of objects may be kept across runs, by object id (objects never change).
    cache_dir: Path | None = None


def init_bare(path: Path) -> None:
    """A new bare repository at `path` whose default branch is main."""
    try:
        gitpython.Repo.init(path, bare=True, mkdir=True, initial_branch="main")
    except gitpython.GitCommandError as failed:
        raise GitError(f"cannot create the fleet repository {path}: {_reason(failed)}") from failed


@contextmanager
def clone(remote: str, *, also: Sequence[str] = (), cache_dir: Path | None = None) -> Iterator[Checkout]:
    """Clone `remote` into a temporary work tree, removed on exit whatever happens.

    The namespaces `also` (refs/<namespace>/*) come with the clone, and with every fetch after it.
    """
    parent = Path(tempfile.mkdtemp(prefix="fleet-"))
    refspecs = [f"--config=remote.origin.fetch=+refs/{namespace}/*:refs/{namespace}/*" for namespace in also]
    try:
        try:
            repo = gitpython.Repo.clone_from(
                remote,
                parent / "fleet",
                env=_ENV,
                no_checkout=True,
                multi_options=refspecs,
                # The options are this module's own refspecs, not anyone's input.
                allow_unsafe_options=True,
            )
            _pin(repo)
        except gitpython.GitCommandError as failed:
            raise GitError(
                f"cannot clone the fleet repository {remote}: {_reason(failed)}; "
                "check the --fleet location and your access to it"
            ) from failed
        try:
            yield Checkout(remote, parent / "fleet", repo, cache_dir)
        finally:
            repo.close()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def scratch(remote: str) -> Iterator[Checkout]:
    """A new, empty repository in a temporary folder whose origin is `remote`, removed on exit whatever happens.

    For a remote that may hold nothing yet, where a clone has nothing to start from: what it holds is fetched.
    """
    parent = Path(tempfile.mkdtemp(prefix="fleet-"))
    try:
        try:
            repo = gitpython.Repo.init(parent / "fleet", mkdir=True, initial_branch="main")
            _pin(repo)
            # Written as configuration, not by `git remote add`: the remote, given by the user, is never an option.
            with repo.config_writer() as config:
                config.set_value('remote "origin"', "url", remote)
                config.set_value('remote "origin"', "fetch", "+refs/heads/*:refs/remotes/origin/*")
        except gitpython.GitCommandError as failed:
            raise GitError(
                f"cannot prepare a repository for {remote}: {_reason(failed)}; check the temporary directory"
            ) from failed
        try:
            yield Checkout(remote, parent / "fleet", repo)
        finally:
            repo.close()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _pin(repo: gitpython.Repo) -> None:
    repo.git.update_environment(**_ENV)
    with repo.config_writer() as config:
        for section, option, value in _PINNED_CONFIG:
            config.set_value(section, option, value)


def remote_refs(remote: str) -> dict[str, str]:
    """Every ref `remote` holds, by name, with its object id; none for an empty repository. Nothing is cloned."""
    try:
        listed = str(gitpython.Git().execute(["git", "ls-remote", "--", remote], env=_ENV))
    except gitpython.GitCommandError as failed:
        raise GitError(
            f"cannot read the fleet repository {remote}: {_reason(failed)}; check the --fleet location and your access"
        ) from failed
    pairs = (line.split("\t", 1) for line in listed.splitlines() if "\t" in line)
    return {ref: sha for sha, ref in pairs}


def fetch_head_of(checkout: Checkout, branch: str) -> str:
    """Fetch the remote `branch`'s head commit and its files, none of its history; its id."""
    _git(
        checkout,
        ["fetch", "--quiet", "--depth=1", "origin", f"+refs/heads/{branch}:{upstream(branch)}"],
        f"cannot fetch {branch} from the fleet repository {checkout.remote}",
        "check the --fleet location and your access to it",
    )
    return checkout.repo.commit(upstream(branch)).hexsha


@contextmanager
def opened(path: Path) -> Iterator[Checkout]:
    """A repository on this machine, written in place (its own branches, not a remote's)."""
    repo = gitpython.Repo(path)
    try:
        repo.git.update_environment(**_ENV)
        yield Checkout(str(path), path, repo)
    finally:
        repo.close()


def upstream(branch: str) -> str:
    return f"refs/remotes/origin/{branch}"


def head_of(checkout: Checkout, branch: str) -> str | None:
    """The remote branch's head commit, None when the remote has no such branch."""
    try:
        return checkout.repo.commit(upstream(branch)).hexsha
    except (gitpython.BadName, ValueError):
        return None


# A commit id as people write it: abbreviated to 4 hex digits at least, up to all 40.
_COMMIT_ID = re.compile(r"^[0-9a-fA-F]{4,40}$")


def resolve(checkout: Checkout, name: str) -> str | None:
    """The commit `name` gives on the remote: a branch, a ref the clone leaves behind (refs/pull/N/head,
    fetched for it) or a commit id, full or abbreviated; None when it gives none. Branch names win."""
    branch = head_of(checkout, name)
    if branch is not None:
        return branch
    if name.startswith("refs/"):
        return _fetched(checkout, name) if _is_ref_name(checkout, name) else None
    if not _COMMIT_ID.match(name):
        return None
    try:
        return str(checkout.repo.git.execute(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"]))
    except gitpython.GitCommandError:
        # A full id only another ref reaches (a pull request's head) is not in the clone; the remote may serve it.
        return _fetched(checkout, name.lower()) if len(name) == 40 else None


def _is_ref_name(checkout: Checkout, name: str) -> bool:
    # git's own rules: no ':' that would make the name a refspec, no '..', nothing that could read as an option.
    try:
        checkout.repo.git.execute(["git", "check-ref-format", name])
    except gitpython.GitCommandError:
        return False
    return True


def _fetched(checkout: Checkout, what: str) -> str | None:
    """The commit the remote gives for the ref or commit id `what`, fetched without naming it locally."""
    try:
        checkout.repo.git.execute(["git", "fetch", "--quiet", "--no-tags", "origin", what])
    except gitpython.GitCommandError:
        return None
    return str(checkout.repo.git.execute(["git", "rev-parse", "--verify", "FETCH_HEAD^{commit}"]))


def switch(checkout: Checkout, branch: str, start: str | None) -> None:
    """Make `branch` the work tree's branch, starting at `start` (None: a branch with no history)."""
    args = ["checkout", "--quiet", "--force"]
    args += ["--orphan", branch] if start is None else ["-B", branch, start]
    _git(checkout, args, f"cannot check out {branch}", "check that the fleet repository is intact")


def read_tree(checkout: Checkout, rev: str, prefix: str, *, leave_out: str = "") -> dict[str, str]:
    """Every file under `prefix` (a folder, '/'-terminated; '' for all) at `rev`, by path; none under the folder
    `leave_out`, which is not even walked."""
    tree = checkout.repo.commit(rev).tree
    try:
        folder = tree / prefix.rstrip("/") if prefix else tree
    except KeyError:
        return {}
    if not isinstance(folder, gitpython.Tree):
        return {}
    skipped = leave_out.rstrip("/")

    def pruned(item: object, _depth: int) -> bool:
        return bool(skipped) and isinstance(item, gitpython.Tree) and item.path == skipped

    return {
        str(item.path): item.data_stream.read().decode("utf-8")
        for item in folder.traverse(prune=pruned)
        if isinstance(item, gitpython.Blob)
    }


def list_files(checkout: Checkout, rev: str, prefix: str) -> tuple[str, ...]:
    """The paths of the files directly in folder `prefix` at `rev`, without reading them."""
    try:
        folder = checkout.repo.commit(rev).tree / prefix.rstrip("/")
    except KeyError:
        return ()
    return tuple(sorted(str(blob.path) for blob in folder.blobs)) if isinstance(folder, gitpython.Tree) else ()


def read_file(checkout: Checkout, rev: str, path: str) -> str | None:
    """The file at `path` in commit `rev`; None when there is none."""
    try:
        item = checkout.repo.commit(rev).tree / path
    except KeyError:
        return None
    return item.data_stream.read().decode("utf-8") if isinstance(item, gitpython.Blob) else None


def blob_ids(checkout: Checkout, rev: str, prefix: str, name: str) -> dict[str, str | None]:
    """For each folder directly under `prefix` at `rev`, by its name: the object id of its file `name`, None when
    it has none. One listing; no file is read."""
    listed = _git(checkout, ["ls-tree", "-r", rev, "--", prefix], f"cannot list {prefix} at {rev[:12]}", "run again")
    found: dict[str, str | None] = {}
    for line in listed.splitlines():
        meta, _, path = line.partition("\t")
        parts = path.removeprefix(prefix).split("/")
        if len(parts) < 2:
            continue
        if parts[1:] == [name]:
            found[parts[0]] = meta.split()[2]
        else:
            found.setdefault(parts[0], None)
    return found


def read_blobs(checkout: Checkout, ids: Iterable[str]) -> dict[str, str]:
    """The content of each blob, by its object id."""
    return {sha: checkout.repo.odb.stream(bytes.fromhex(sha)).read().decode("utf-8") for sha in ids}


def read_each(checkout: Checkout, rev: str, prefix: str, name: str) -> dict[str, str | None]:
    """For each folder directly under `prefix` at `rev`, by its name: its file `name`, None when it has none."""
    ids = blob_ids(checkout, rev, prefix, name)
    texts = read_blobs(checkout, {sha for sha in ids.values() if sha is not None})
    return {folder: None if sha is None else texts[sha] for folder, sha in ids.items()}


def write_files(checkout: Checkout, files: Mapping[str, str]) -> None:
    for path, content in files.items():
        target = checkout.path / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        except OSError as failed:
            no_room = failed.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
            raise GitError(
                f"cannot write {path} into the fleet's temporary clone: {failed.strerror or failed}; "
                + (_free_space(checkout) if no_room else f"check the temporary directory {checkout.path.parent.parent}")
            ) from failed


def delete_files(checkout: Checkout, paths: Iterable[str]) -> None:
    for path in paths:
        (checkout.path / path).unlink(missing_ok=True)


def stage_all(checkout: Checkout) -> str:
    """Stage the whole work tree; the id of the tree a commit would now record."""
    _git(checkout, ["add", "--all"], "cannot stage the fleet files", "check the temporary work tree's disk")
    return _git(checkout, ["write-tree"], "cannot stage the fleet files", "check the temporary work tree")


def tree_of(checkout: Checkout, rev: str) -> str:
    return checkout.repo.commit(rev).tree.hexsha


def tree_with(checkout: Checkout, base: str, remove: Iterable[str], files: Mapping[str, str]) -> str:
    """The id of `base`'s tree with the paths `remove` gone and `files` written; no work tree is touched.

    A fleet of thousands of clusters is never checked out: the change is made in an index of its own.
    """
    index = Path(checkout.repo.git_dir) / "fleet-pipeline-index"
    env = {**_ENV, "GIT_INDEX_FILE": str(index)}
    try:
        lines = [f"0 {'0' * 40}\t{path}\n" for path in remove]
        for path, content in files.items():
            blob = checkout.repo.odb.store(IStream("blob", len(data := content.encode("utf-8")), io.BytesIO(data)))
            lines.append(f"100644 {blob.hexsha.decode()}\t{path}\n")
        checkout.repo.git.execute(["git", "read-tree", base], env=env)
        with tempfile.TemporaryFile(dir=checkout.repo.git_dir) as listing:
            listing.write("".join(lines).encode("utf-8"))
            listing.seek(0)
            checkout.repo.git.execute(["git", "update-index", "--index-info"], env=env, istream=listing)
        return str(checkout.repo.git.execute(["git", "write-tree"], env=env))
    except (gitpython.GitCommandError, OSError) as failed:
        reason = _reason(failed) if isinstance(failed, gitpython.GitCommandError) else str(failed.strerror or failed)
        fix = _free_space(checkout) if any(sign in reason for sign in _NO_ROOM) else "check the temporary directory"
        raise GitError(f"cannot build the fleet's new tree: {reason}; {fix}") from failed
    finally:
        index.unlink(missing_ok=True)


def commit_tree(
    checkout: Checkout, branch: str, tree: str, parents: Sequence[str], message: str, *, signer: signing.Signer
) -> str:
    """A commit of `tree` on `parents`, signed by `signer`, made the local `branch`; its id."""
    parent_args = [arg for parent in parents for arg in ("-p", parent)]
    sha = _signed(checkout, branch, ["commit-tree", *parent_args, "-m", message, tree], signer)
    _git(checkout, ["update-ref", f"refs/heads/{branch}", sha], f"cannot record {branch}", "run again")
    return sha


def commit(checkout: Checkout, message: str, signer: signing.Signer) -> str:
    """Commit what is staged, signed by `signer`; the new commit's id."""
    branch = checkout.repo.head.reference.name
    _signed(checkout, branch, ["commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", message], signer)
    return checkout.repo.head.commit.hexsha


def merge(checkout: Checkout, rev: str, message: str, signer: signing.Signer) -> str:
    """Merge `rev` into the current branch with a signed merge commit; its id."""
    branch = checkout.repo.head.reference.name
    _signed(checkout, branch, ["merge", "--quiet", "--no-ff", "--no-verify", "-m", message, rev], signer)
    return checkout.repo.head.commit.hexsha


def fast_forward(checkout: Checkout, rev: str) -> None:
    branch = checkout.repo.active_branch.name
    _git(
        checkout,
        ["merge", "--quiet", "--ff-only", rev],
        f"cannot fast-forward {branch} in {checkout.remote}",
        "its history diverged; approve again to merge instead",
    )


def is_ancestor(checkout: Checkout, ancestor: str, descendant: str) -> bool:
    repo = checkout.repo
    return repo.is_ancestor(repo.commit(ancestor), repo.commit(descendant))


def changed_paths(checkout: Checkout, base: str, head: str) -> tuple[str, ...]:
    """Paths `head` changes since it forked from `base`."""
    out = _git(
        checkout,
        ["diff", "--name-only", "--no-renames", f"{base}...{head}"],
        f"cannot compare {head[:12]} with {base[:12]}",
        "check that the fleet repository is intact",
    )
    return tuple(sorted(line for line in out.splitlines() if line))


def fetch(checkout: Checkout) -> None:
    """Bring every `origin/<branch>` up to date with the remote, dropping branches it deleted."""
    _git(
        checkout,
        ["fetch", "--quiet", "--prune", "origin"],
        f"cannot fetch from the fleet repository {checkout.remote}",
        "check the --fleet location and your access to it",
    )


# The reasons git gives when the remote branch is no longer what this push expected; the
# last is the remote's own, when another push updated the branch while this one was sent.
_MOVED = ("(non-fast-forward)", "(fetch first)", "(stale info)", "cannot lock ref")


def push(checkout: Checkout, branch: str, lease: str | None = None) -> None:
    """Push the local `branch` to the remote.

    Without `lease` only a fast-forward is accepted. With it the remote branch is replaced
    whatever its history, but only while it still points at `lease`: a rewrite never
    overwrites work it did not see. Either way a branch that moved raises PushRejected.
    """
    ref = f"refs/heads/{branch}"
    guard = [] if lease is None else [f"--force-with-lease={ref}:{lease}"]
    try:
        checkout.repo.git.execute(["git", "push", "--quiet", "--no-verify", *guard, "origin", f"{ref}:{ref}"])
    except gitpython.GitCommandError as failed:
        if any(reason in str(failed.stderr) for reason in _MOVED):
            raise PushRejected(
                f"{checkout.remote} refused the push of {branch}: it moved while this run worked; run again"
            ) from failed
        refused = _refusal(failed)
        if refused:
            raise GitError(
                f"{checkout.remote} refused the push of {branch}: {refused}; "
                "fix what it reports (or ask the fleet's maintainers), then run again"
            ) from failed
        raise GitError(
            f"cannot push {branch} to {checkout.remote}: {_reason(failed)}; check your write access"
        ) from failed


def delete_branch(checkout: Checkout, branch: str, lease: str) -> None:
    """Delete `branch` on the remote only while it still points at `lease`: work pushed meanwhile stays."""
    ref = f"refs/heads/{branch}"
    try:
        checkout.repo.git.execute(
            ["git", "push", "--quiet", "--no-verify", f"--force-with-lease={ref}:{lease}", "origin", f":{ref}"]
        )
    except gitpython.GitCommandError as failed:
        if any(reason in str(failed.stderr) for reason in _MOVED):
            raise PushRejected(f"{branch} moved in {checkout.remote} while this run worked; run again") from failed
        refused = _refusal(failed)
        if refused:
            raise GitError(
                f"{checkout.remote} refused to delete {branch}: {refused}; "
                "fix what it reports (or ask the fleet's maintainers), then run again"
            ) from failed
        raise GitError(
            f"cannot delete {branch} in {checkout.remote}: {_reason(failed)}; check your write access"
        ) from failed


def commits_touching(checkout: Checkout, revs: Sequence[str], path: str) -> tuple[str, ...]:
    """The commits reachable from `revs` that changed `path`, newest first."""
    listed = _git(checkout, ["rev-list", *revs, "--", path], f"cannot read the history of {path}", "run again")
    return tuple(listed.split())


def remote_heads(checkout: Checkout, prefix: str) -> dict[str, str]:
    """Every remote branch named `prefix`*, by the rest of its name, with its head."""
    listed = _git(
        checkout,
        ["for-each-ref", "--format=%(refname:lstrip=3) %(objectname)", f"{upstream(prefix)}*"],
        f"cannot list the branches {prefix}* of {checkout.remote}",
        "run again",
    )
    heads = (line.split() for line in listed.splitlines() if line)
    return {branch.removeprefix(prefix): sha for branch, sha in heads}


def last_commits_under(checkout: Checkout, rev: str, prefix: str) -> dict[str, str]:
    """For each folder directly under `prefix`, by name: the newest commit reachable from `rev` that changed it."""
    listed = _git(
        checkout,
        ["log", "--format=%x00%H", "--name-only", rev, "--", prefix],
        f"cannot read the history of {prefix}",
        "run again",
    )
    newest: dict[str, str] = {}
    for block in listed.split("\0")[1:]:
        sha, _, paths = block.partition("\n")
        for path in paths.splitlines():
            parts = path.removeprefix(prefix).split("/")
            if len(parts) >= 2 and parts[0]:
                newest.setdefault(parts[0], sha.strip())
    return newest


def has_signature(checkout: Checkout, rev: str) -> bool:
    """Whether the commit carries a signature at all, good or not (its header has a gpgsig field)."""
    header = _git(checkout, ["cat-file", "commit", rev], f"cannot read commit {rev}", "").split("\n\n", 1)[0]
    return any(line.startswith("gpgsig") for line in header.splitlines())


def trailers(checkout: Checkout, rev: str) -> dict[str, str]:
    """The trailers of commit `rev`'s message (`Key: value` lines at its end), by key; the last of a repeated key."""
    listed = _git(
        checkout,
        ["log", "-1", "--format=%(trailers:only=true,unfold=true,separator=%x00)", rev],
        f"cannot read commit {rev}",
        "",
    )
    found: dict[str, str] = {}
    for line in listed.split("\0"):
        key, colon, value = line.partition(":")
        if colon and key.strip():
            found[key.strip()] = value.strip()
    return found


def claims(checkout: Checkout, namespace: str, *, fresh: bool = False) -> dict[str, str]:
    """Every claim under refs/<namespace>/: its key, and who holds it. As the clone (or its last fetch) saw the
    remote, or with `fresh`, as the remote holds them now."""
    refs = f"refs/{namespace}"
    if fresh:
        _git(
            checkout,
            ["fetch", "--quiet", "--prune", "origin", f"+{refs}/*:{refs}/*"],
            f"cannot read {refs}",
            "run again",
        )
    listed = _git(
        checkout,
        ["for-each-ref", "--format=%(refname)%00%(contents:subject)", f"{refs}/"],
        f"cannot list {refs}",
        "run again",
    )
    held = (line.split("\0", 1) for line in listed.splitlines() if line)
    return {ref.removeprefix(f"{refs}/"): holder for ref, holder in held}


def claim(checkout: Checkout, namespace: str, key: str, holder: str) -> str:
    """Claim refs/<namespace>/<key> for `holder` unless someone holds it; who holds it afterwards.

    The push creates the ref only if it does not exist yet, which the remote decides
    atomically: of two runs claiming one key at the same moment, exactly one wins. A lost
    claim reads every claim afresh, so the loser learns all that were made meanwhile.
    """
    ref = f"refs/{namespace}/{key}"
    empty_tree = _git(checkout, ["hash-object", "-t", "tree", "-w", os.devnull], "cannot claim", "run again")
    token = str(checkout.repo.git.execute(["git", "commit-tree", empty_tree, "-m", holder], env=_identity()))
    try:
        checkout.repo.git.execute(["git", "push", "--quiet", f"--force-with-lease={ref}:", "origin", f"{token}:{ref}"])
    except gitpython.GitCommandError as failed:
        if not any(reason in str(failed.stderr) for reason in _MOVED):
            raise GitError(f"cannot claim {ref} in {checkout.remote}: {_reason(failed)}") from failed
        return claims(checkout, namespace, fresh=True).get(key, "")
    _git(checkout, ["update-ref", ref, token], f"cannot record {ref}", "run again")
    return holder


def unclaim(checkout: Checkout, namespace: str, key: str) -> None:
    ref = f"refs/{namespace}/{key}"
    _git(checkout, ["push", "--quiet", "origin", f":{ref}"], f"cannot release {ref}", "run again")
    _git(checkout, ["update-ref", "-d", ref], f"cannot release {ref}", "run again")


def _signed(checkout: Checkout, branch: str, args: Sequence[str], signer: signing.Signer) -> str:
    """Run git command `args` signing with `signer`'s key; its output."""
    identity = _identity()
    with signing.gpg_env(signer.gnupg_home) as env, signing.gpg_program(signer) as (program, program_env):
        try:
            return str(
                checkout.repo.git.execute(
                    ["git", "-c", f"gpg.program={program}", args[0], f"-S{signer.fingerprint}", *args[1:]],
                    env={**identity, **env, **program_env},
                )
            )
        except gitpython.GitCommandError as failed:
            output = f"{failed.stdout}\n{failed.stderr}"
            if "gpg failed to sign" in output or "gpg:" in output:
                raise SigningError(
                    f"cannot sign a commit on {branch} with key {signer.fingerprint}: {_reason(failed, 'error: ')}; "
                    f"check that the key's secret part is available ('{_list_secret_keys(signer)}')"
                    + ("" if signer.local_only or signer.passphrase else ", and PIPELINE_GPG_PASSPHRASE if it has one")
                ) from failed
            if "CONFLICT" in output:
                raise GitConflict(
                    f"{branch} conflicts with {args[-1]} in {checkout.remote}; "
                    "re-run new-cluster to rebuild the review branch from main"
                ) from failed
            raise GitError(f"git {args[0]} on {branch} failed in {checkout.remote}: {_reason(failed)}") from failed


def _list_secret_keys(signer: signing.Signer) -> str:
    """The command that shows the signer's secret keys: in the pipeline's own GnuPG home when it has one."""
    home = "" if signer.gnupg_home is None else f"GNUPGHOME={shlex.quote(str(signer.gnupg_home))} "
    return f"{home}gpg --list-secret-keys"


def _identity() -> dict[str, str]:
    name, email = IDENTITY
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _git(checkout: Checkout, args: Sequence[str], what: str, fix: str) -> str:
    try:
        return str(checkout.repo.git.execute(["git", *args]))
    except gitpython.GitCommandError as failed:
        if any(sign in str(failed.stderr) for sign in _NO_ROOM):
            fix = _free_space(checkout)
        raise GitError(f"{what}: {_reason(failed)}; {fix}") from failed


# What git says when a write into the clone fails for want of room (ENOSPC, EDQUOT, or EFBIG
# from a file size limit): the work tree, the index and the object store all live in the clone.
_NO_ROOM = (
    "No space left on device",
    "Disk quota exceeded",
    "File too large",
    "unable to write",
    "Out of diskspace",
)


def _free_space(checkout: Checkout) -> str:
    return (
        f"free disk space in {checkout.path.parent.parent}, where the fleet's temporary clones go "
        "(TMPDIR moves them), and run again"
    )


def _refusal(failed: gitpython.GitCommandError) -> str:
    """Why the remote itself refused a ref ('[remote rejected]'), with what it said ('remote:' lines); '' if it did not.

    A pre-receive or update hook, a protected branch: git's last line only says the push failed.
    """
    lines = [line.strip().removeprefix("stderr: ").strip("'").strip() for line in str(failed.stderr).splitlines()]
    rejected = [line.rpartition("(")[2].rstrip(")") for line in lines if "[remote rejected]" in line]
    if not rejected:
        return ""
    said = [line.removeprefix("remote:").strip() for line in lines if line.startswith("remote:")]
    said = [line for line in said if line][-3:]
    return rejected[0] + (f": {' | '.join(said)}" if said else "")


def _reason(failed: gitpython.GitCommandError, prefer: str = "") -> str:
    """The line of git's output that says why: the last one, or the last starting with `prefer`."""
    lines = [line.strip().removeprefix("stderr: ").strip("'") for line in str(failed.stderr).splitlines()]
    lines = [line for line in lines if line]
    preferred = [line for line in lines if prefer and line.startswith(prefer)]
    return (preferred or lines or [f"exit {failed.status}"])[-1]
