"""Local review: a cluster's signed review branch becomes main, which is what Flux applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline import fleet, git
from pipeline.commit import review_branch
from pipeline.config import Settings
from pipeline.errors import BadInput
from pipeline.signing import Signer, verify_commit

How = Literal["fast-forward", "merge", "already merged"]


@dataclass(frozen=True)
class Approval:
    main: str  # main's head after approval
    how: How
    signer: str  # fingerprint of the trusted key that signed main's head


def approve(name: str, settings: Settings, signer: Signer) -> Approval:
    """Verify `cluster/<name>`'s head against main's trusted keys, then make main include it.

    Main is fast-forwarded to the branch's own signed commit when it can be; when main has
    moved on, `signer` signs a merge commit, which is verified in turn. Trust always comes
    from main's keys, so a branch cannot vouch for itself by adding a key, and a branch
    that changes anything besides its own cluster's files is refused.
    """
    branch = review_branch(name)
    with git.clone(settings.fleet) as checkout:
        head = git.head_of(checkout, branch)
        if head is None:
            raise BadInput(f"no review branch {branch} in {settings.fleet}; run new-cluster {name} first")
        main_head = git.head_of(checkout, fleet.MAIN)
        if main_head is None:
            raise BadInput(f"the fleet {settings.fleet} has no main branch; it was not created by the pipeline")
        trusted = fleet.keys_at(checkout, main_head)
        signed_by = verify_commit(checkout.path, head, trusted)
        if git.is_ancestor(checkout, head, main_head):
            return Approval(main_head, "already merged", signed_by)
        _refuse_foreign_changes(checkout, name, main_head, head)
        git.switch(checkout, fleet.MAIN, main_head)
        if git.is_ancestor(checkout, main_head, head):
            git.fast_forward(checkout, head)
            how: How = "fast-forward"
            new_main = head
        else:
            new_main = git.merge(checkout, head, f"cluster {name}: merge {branch} into main\n", signer)
            signed_by = verify_commit(checkout.path, new_main, trusted)
            how = "merge"
        git.push(checkout, fleet.MAIN)
    return Approval(new_main, how, signed_by)


def _refuse_foreign_changes(checkout: git.Checkout, name: str, main_head: str, head: str) -> None:
    folder, kustomization = fleet.owned_paths(name)
    foreign = [
        path
        for path in git.changed_paths(checkout, main_head, head)
        if not (path.startswith(folder) or path == kustomization)
    ]
    if foreign:
        raise BadInput(
            f"{review_branch(name)} changes files outside cluster {name} ({foreign[0]}"
            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); review and merge it by hand"
        )
