from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import git, signing
from pipeline.errors import GitConflict, GitError, PushRejected, SigningError


def _log(remote: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "log", *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def signer(tmp_path: Path) -> signing.Signer:
    return signing.ensure_local_key(tmp_path / "gnupg")


@pytest.fixture
def remote(tmp_path: Path, signer: signing.Signer) -> Path:
    """A bare repository whose main holds one signed commit with a.txt and dir/b.txt."""
    path = tmp_path / "remote.git"
    git.init_bare(path)
    with git.clone(str(path)) as checkout:
        git.switch(checkout, "main", None)
        git.write_files(checkout, {"a.txt": "a\n", "dir/b.txt": "b\n"})
        git.stage_all(checkout)
        git.commit(checkout, "first\n\nRun: 1\n", signer)
        git.push(checkout, "main")
    return path


def test_first_commit_is_signed_with_the_pinned_identity(remote: Path, signer: signing.Signer) -> None:
    assert _log(remote, "--format=%an <%ae>|%cn", "main").strip() == (
        "Fleet Pipeline <pipeline@local.invalid>|Fleet Pipeline"
    )
    trusted = [signing.export_public(signer)]
    assert signing.verify_commit(remote, "main", trusted) == signer.fingerprint
    assert "Run: 1" in _log(remote, "--format=%B", "main")


def test_clone_is_removed_afterwards_even_on_error(remote: Path) -> None:
    with pytest.raises(RuntimeError), git.clone(str(remote)) as checkout:
        kept = checkout.path
        raise RuntimeError
    assert not kept.exists()


def test_clone_of_a_missing_remote_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.git"
    with pytest.raises(GitError, match=f"cannot clone the fleet repository {missing}"), git.clone(str(missing)):
        pass


def test_reads_heads_and_trees(remote: Path) -> None:
    with git.clone(str(remote)) as checkout:
        head = git.head_of(checkout, "main")
        assert head is not None
        assert git.head_of(checkout, "cluster/none") is None
        assert git.read_tree(checkout, head, "dir/") == {"dir/b.txt": "b\n"}
        assert git.read_tree(checkout, git.upstream("main"), "missing/") == {}


def test_delete_and_write_change_the_staged_tree(remote: Path, signer: signing.Signer) -> None:
    with git.clone(str(remote)) as checkout:
        head = git.head_of(checkout, "main")
        assert head is not None
        git.switch(checkout, "topic", head)
        assert git.stage_all(checkout) == git.tree_of(checkout, head)
        git.delete_files(checkout, ["dir/b.txt"])
        git.write_files(checkout, {"c.txt": "c\n"})
        git.stage_all(checkout)
        new = git.commit(checkout, "change\n", signer)
        assert set(git.read_tree(checkout, new, "")) == {"a.txt", "c.txt"}
        assert git.changed_paths(checkout, head, new) == ("c.txt", "dir/b.txt")
        assert git.is_ancestor(checkout, head, new)
        assert not git.is_ancestor(checkout, new, head)


def test_push_refuses_a_non_fast_forward(remote: Path, signer: signing.Signer) -> None:
    with git.clone(str(remote)) as first, git.clone(str(remote)) as second:
        for checkout, content in ((first, "one"), (second, "two")):
            git.switch(checkout, "main", git.upstream("main"))
            git.write_files(checkout, {"a.txt": content})
            git.stage_all(checkout)
            git.commit(checkout, content, signer)
        git.push(first, "main")
        before = _log(remote, "--format=%H", "main")
        with pytest.raises(GitConflict, match=f"{remote} refused the push of main"):
            git.push(second, "main")
    assert _log(remote, "--format=%H", "main") == before


def test_signing_with_a_missing_key_is_a_signing_error(remote: Path, tmp_path: Path) -> None:
    ghost = signing.Signer("0" * 40, tmp_path / "empty-gnupg", local_only=True)
    (tmp_path / "empty-gnupg").mkdir(mode=0o700)
    with git.clone(str(remote)) as checkout:
        git.switch(checkout, "main", git.upstream("main"))
        git.write_files(checkout, {"a.txt": "changed"})
        git.stage_all(checkout)
        with pytest.raises(
            SigningError, match=r"cannot sign a commit on main with key 0{40}: error: gpg failed to sign"
        ):
            git.commit(checkout, "unsignable", ghost)


def _commit_on_main(checkout: git.Checkout, content: str, signer: signing.Signer) -> str:
    git.switch(checkout, "main", git.upstream("main"))
    git.write_files(checkout, {"a.txt": content})
    git.stage_all(checkout)
    return git.commit(checkout, content, signer)


def test_push_with_a_lease_replaces_the_branch_it_read(remote: Path, signer: signing.Signer) -> None:
    with git.clone(str(remote)) as first, git.clone(str(remote)) as second:
        old = git.head_of(second, "main")
        _commit_on_main(first, "one", signer)
        git.push(first, "main")
        replacement = _commit_on_main(second, "two", signer)
        with pytest.raises(PushRejected, match=f"{remote} refused the push of main"):
            git.push(second, "main", lease=old)
        assert _log(remote, "-1", "--format=%B", "main").strip() == "one"
        git.fetch(second)
        git.push(second, "main", lease=git.head_of(second, "main"))
    assert _log(remote, "-1", "--format=%H", "main").strip() == replacement


def test_fetch_sees_what_others_pushed(remote: Path, signer: signing.Signer) -> None:
    with git.clone(str(remote)) as first, git.clone(str(remote)) as second:
        pushed = _commit_on_main(first, "one", signer)
        git.push(first, "main")
        assert git.head_of(second, "main") != pushed
        git.fetch(second)
        assert git.head_of(second, "main") == pushed


def test_a_push_losing_the_remote_ref_lock_is_rejected_as_moved(remote: Path, signer: signing.Signer) -> None:
    # What a push sees when another push holds the branch's lock on the remote at that moment.
    (remote / "refs" / "heads" / "main.lock").write_text("")
    with git.clone(str(remote)) as checkout:
        _commit_on_main(checkout, "one", signer)
        with pytest.raises(PushRejected, match="it moved while this run worked"):
            git.push(checkout, "main")


PASSPHRASE = "planted-passphrase-2d4c6e8a"
GENERATE = ("--quick-gen-key", "Protected <protected@example.invalid>", "ed25519", "sign", "never")
LIST = ("gpg", "--batch", "--with-colons", "--list-secret-keys")


@pytest.fixture
def protected() -> Iterator[signing.Signer]:
    """A signing key that needs PASSPHRASE, in its own short GnuPG home; its agent stopped after."""
    home = Path(tempfile.mkdtemp(prefix="gpp", dir="/tmp"))
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(
            [*("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", PASSPHRASE), *GENERATE],
            env=env,
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        yield signing.Signer(fingerprint, home, local_only=False, passphrase=PASSPHRASE)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.reliability("secret", "a signing key with a passphrase, given in PIPELINE_GPG_PASSPHRASE")
def test_a_key_with_a_passphrase_signs_and_the_passphrase_goes_nowhere(
    remote: Path, protected: signing.Signer, record_property
) -> None:
    with git.clone(str(remote)) as checkout:
        # Without it first: once gpg-agent has the passphrase, it may keep it for a while.
        with pytest.raises(SigningError, match="and PIPELINE_GPG_PASSPHRASE if it has one") as caught:
            _commit_on_main(checkout, "no passphrase", dataclasses.replace(protected, passphrase=None))
        commit = _commit_on_main(checkout, "signed with a passphrase", protected)
        git.push(checkout, "main")
        signed_by = signing.verify_commit(checkout.path, commit, [signing.export_public(protected)])

    assert signed_by == protected.fingerprint
    history = subprocess.run(
        ["git", "--git-dir", str(remote), "cat-file", "--batch-all-objects", "--batch"], capture_output=True, check=True
    ).stdout
    assert PASSPHRASE.encode() not in history
    assert PASSPHRASE not in str(caught.value) and PASSPHRASE not in repr(protected)
    assert not list(Path(tempfile.gettempdir()).glob("fleet-gpg-*/gpg-loopback"))
    record_property(
        "outcome",
        "commit verified as signed by the protected key; without the passphrase: "
        f"{type(caught.value).__name__}; passphrase in no object, message, repr or leftover file",
    )
