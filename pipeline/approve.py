"""Review: a signed review branch becomes main, which is what Flux applies.

`approve` is the local review: it fast-forwards main to the branch's signed head, or signs
a merge when main has moved. `merge` ends a GitHub review: main becomes the very commit
the reviewer approved, or nothing happens. Either way trust comes from the keys on main
before the change, so a branch can never vouch for itself by adding a key.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from pipeline import fleet, git
from pipeline.commit import review_branch
from pipeline.config import Settings
from pipeline.errors import BadInput, GitConflict, PushRejected
from pipeline.signing import Signer, verify_commit

How = Literal["fast-forward", "merge", "already merged"]

KEYS_BRANCH = "keys/rotation"
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
# Writers racing for main: the loser of each round reads main again and retries after a
# pause that doubles, capped, and jittered so two losers do not collide again in step.
# Each rejected push means another approval landed: ten approvals started together need nine retries at most.
_ATTEMPTS = 12
_FIRST_PAUSE = 0.1
_MAX_PAUSE = 2.0


@dataclass(frozen=True)
class Approval:
    main: str  # main's head after approval
    how: How
    signer: str  # fingerprint of the trusted key that signed the approved head (or the merge)


@dataclass(frozen=True)
class Review:
    """A branch under review and the only files it may change on main."""

    branch: str
    label: str  # what the branch changes, for messages: "cluster demo"
    owns: Callable[[str], bool]  # whether a path (relative to the fleet's root) is the review's
    make: str  # how the branch is made again, for messages: "run new-cluster demo"


def cluster_review(name: str) -> Review:
    """`cluster/<name>`, owning `clusters/<name>/**` and `flux/clusters/<name>.yaml`."""
    folder, kustomization = fleet.owned_paths(name)
    return Review(
        review_branch(name),
        f"cluster {name}",
        lambda path: path.startswith(folder) or path == kustomization,
        f"run new-cluster {name}",
    )


def keys_review() -> Review:
    """`keys/rotation`, owning the trusted keys `flux/system/keys/*.asc` and the kustomization listing them."""
    keys_dir = PurePosixPath(fleet.KEYS_DIR)
    return Review(
        KEYS_BRANCH,
        "the trusted keys",
        lambda path: (
            path == fleet.SYSTEM_KUSTOMIZATION or (PurePosixPath(path).parent == keys_dir and path.endswith(".asc"))
        ),
        "run keys add or keys retire",
    )


def approve_cluster(name: str, settings: Settings, signer: Signer) -> Approval:
    return approve(cluster_review(name), settings, signer)


def approve(review: Review, settings: Settings, signer: Signer) -> Approval:
    """Verify the review branch's head against main's trusted keys, then make main include it.

    Main is fast-forwarded to the branch's own signed commit when it can be; when main has
    moved on, `signer` signs a merge commit, which is verified in turn. A branch that
    changes anything its review does not own is refused. When another writer moves main
    first, the approval is redone on the new main, a bounded number of times.
    """
    exhausted = GitConflict(
        f"main in {settings.fleet} kept moving while {review.branch} was approved "
        f"({_ATTEMPTS} attempts); approve {review.branch} again"
    )
    with git.clone(settings.fleet) as checkout:
        return _landing(checkout, _backoff(), lambda: _approve_once(checkout, review, settings, signer), exhausted)


def merge(review: Review, settings: Settings, approved_sha: str) -> Approval:
    """Make main the review branch's head, which a reviewer approved as `approved_sha`.

    Only a pure fast-forward is made, so main's head is the very commit that was reviewed,
    signed by the fleet's key; nothing is signed here. A head that moved since the
    approval, is not signed by a key main trusts, or no longer sits on top of main is
    refused: the branch must be made again and its new head reviewed.
    """
    if not _FULL_SHA.match(approved_sha):
        raise BadInput(
            f"approved commit '{approved_sha}' is not a full commit id (40 lower-case hex digits); "
            f"pass the head of {review.branch} the reviewer approved"
        )
    with git.clone(settings.fleet) as checkout:
        # One more look when the push races: main may have moved only along the branch.
        once = (0.0,)
        return _landing(
            checkout, once, lambda: _merge_once(checkout, review, settings, approved_sha), _main_moved(review)
        )


def _landing(
    checkout: git.Checkout, pauses: Iterable[float], attempt: Callable[[], Approval], exhausted: GitConflict
) -> Approval:
    """`attempt()`, made again from a fresh read of the remote after each pause while main moves under its push."""
    for pause in pauses:
        try:
            return attempt()
        except PushRejected:
            time.sleep(pause)
            git.fetch(checkout)
    try:
        return attempt()
    except PushRejected as rejected:
        raise exhausted from rejected


def _approve_once(checkout: git.Checkout, review: Review, settings: Settings, signer: Signer) -> Approval:
    head, main_head = _heads(checkout, review, settings)
    trusted = fleet.keys_at(checkout, main_head)
    signed_by = verify_commit(checkout.path, head, trusted)
    if git.is_ancestor(checkout, head, main_head):
        return Approval(main_head, "already merged", signed_by)
    _refuse_foreign_changes(checkout, review, main_head, head)
    git.switch(checkout, fleet.MAIN, main_head)
    # Flux checks main's head again with the keys that head lists, so the key that signs it must be one of them.
    # A head signed by a key its rotation retires is landed under a merge that a staying key signs.
    if git.is_ancestor(checkout, main_head, head) and signed_by in fleet.key_fingerprints_at(checkout, head):
        git.fast_forward(checkout, head)
        how: How = "fast-forward"
        new_main = head
    else:
        new_main = git.merge(checkout, head, f"{review.label}: merge {review.branch} into main\n", signer)
        signed_by = verify_commit(checkout.path, new_main, trusted)
        if signed_by not in fleet.key_fingerprints_at(checkout, new_main):
            raise BadInput(_retired_signer(review, signed_by, settings))
        how = "merge"
    git.push(checkout, fleet.MAIN)
    return Approval(new_main, how, signed_by)


def _merge_once(checkout: git.Checkout, review: Review, settings: Settings, approved: str) -> Approval:
    head, main_head = _heads(checkout, review, settings)
    if head != approved:
        raise GitConflict(
            f"{review.branch} moved since it was approved (approved {approved[:12]}, head {head[:12]}); "
            "review the new head"
        )
    signed_by = verify_commit(checkout.path, head, fleet.keys_at(checkout, main_head))
    if git.is_ancestor(checkout, head, main_head):
        return Approval(main_head, "already merged", signed_by)
    if not git.is_ancestor(checkout, main_head, head):
        raise _main_moved(review)
    _refuse_foreign_changes(checkout, review, main_head, head)
    git.switch(checkout, fleet.MAIN, main_head)
    git.fast_forward(checkout, head)
    git.push(checkout, fleet.MAIN)
    return Approval(head, "fast-forward", signed_by)


def _heads(checkout: git.Checkout, review: Review, settings: Settings) -> tuple[str, str]:
    """The review branch's head and main's, as the remote has them now."""
    head = git.head_of(checkout, review.branch)
    if head is None:
        raise BadInput(f"no review branch {review.branch} in {settings.fleet}; {review.make} first")
    main_head = git.head_of(checkout, fleet.MAIN)
    if main_head is None:
        raise BadInput(f"the fleet {settings.fleet} has no main branch; it was not created by the pipeline")
    return head, main_head


def _refuse_foreign_changes(checkout: git.Checkout, review: Review, main_head: str, head: str) -> None:
    foreign = [path for path in git.changed_paths(checkout, main_head, head) if not review.owns(path)]
    if foreign:
        raise BadInput(
            f"{review.branch} changes files outside {review.label} ({foreign[0]}"
            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); review and merge it by hand"
        )


def _retired_signer(review: Review, fingerprint: str, settings: Settings) -> str:
    how = "set PIPELINE_SIGNING_KEY to its fingerprint"
    if settings.target == "local":
        how = f"the local target always signs with its local key: use --target aws and {how}"
    return (
        f"{review.branch} retires key {fingerprint}, which would sign main's new head: Flux would refuse main "
        f"once it holds the new keys; sign with a key that stays trusted ({how}) and approve again"
    )


def _main_moved(review: Review) -> GitConflict:
    return GitConflict(
        f"main moved since {review.branch} was made; {review.make} to rebase it, then approve the new head"
    )


def _backoff() -> Iterator[float]:
    """The pauses between attempts: 0.1 s doubling up to 2 s, each a random part of its step."""
    for attempt in range(_ATTEMPTS - 1):
        step = min(_FIRST_PAUSE * 2**attempt, _MAX_PAUSE)
        yield random.uniform(step / 2, step)  # noqa: S311 - spreads writers in time; nothing secret
