"""Fleets of many clusters on main: made quickly, straight into the fleet's bare repository, signed."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Sequence

import git as gitpython
from gitdb.base import IStream

from bench.harness import Home
from bench.render_rate import cluster
from pipeline import commit, fleet, git, signing
from pipeline.config import load_settings


def grow(home: Home, indexes: Sequence[int]) -> None:
    """Clusters `indexes` on main in one signed commit, each with its CIDR claim, as the pipeline would leave them."""
    settings = load_settings(home.env, home.root)
    signer = signing.signer_for(settings)
    files = {m.path: m.content for i in indexes for m in cluster(i).files}
    with signing.gpg_env(signer.gnupg_home), fleet.session(settings) as checkout:
        main_head = git.head_of(checkout, fleet.MAIN)
        assert main_head is not None
        tree = git.tree_with(checkout, main_head, (), files)
        git.commit_tree(checkout, fleet.MAIN, tree, [main_head], f"bench: {len(indexes)} clusters\n", signer=signer)
        git.push(checkout, fleet.MAIN)
    _claims(
        home, {cluster(i).cluster: fleet.recorded_cidr(files[f"clusters/fleet-{i:04d}/cluster.yaml"]) for i in indexes}
    )


def _claims(home: Home, held: dict[str, str | None]) -> None:
    """The claim refs a run makes, written into the bare repository in one transaction."""
    repo = gitpython.Repo(home.fleet)
    try:
        lines = []
        for holder, cidr in held.items():
            assert cidr is not None
            raw = (
                f"tree {git.EMPTY_TREE}\nauthor Bench <bench@local.invalid> 0 +0000\n"
                f"committer Bench <bench@local.invalid> 0 +0000\n\n{holder}\n"
            ).encode()
            sha = repo.odb.store(IStream("commit", len(raw), io.BytesIO(raw))).hexsha.decode()
            lines.append(f"create refs/{fleet.CIDR_CLAIMS}/{cidr.replace('/', '-')} {sha}\n")
        subprocess.run(
            ["git", "-C", str(home.fleet), "hash-object", "-t", "tree", "-w", "/dev/null"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["git", "-C", str(home.fleet), "update-ref", "--stdin"], input="".join(lines), text=True, check=True
        )
    finally:
        repo.close()


def change_one(home: Home, index: int) -> str:
    """A review branch that changes cluster `index`'s workers; its name."""
    settings = load_settings(home.env, home.root)
    signer = signing.signer_for(settings)
    changed = cluster(index, replicas=4)
    with signing.gpg_env(signer.gnupg_home), fleet.session(settings) as checkout:
        done = commit.commit(changed, checkout, signer, {"Pipeline-Run": "bench"}, "bench: 4 workers")
    return done.branch
