"""The kustomization.yaml that Flux's kustomize-controller generates for a path that has none.

A Flux Kustomization builds its `spec.path` with kustomize. When the path holds no kustomization file, the
controller writes one first (fluxcd/pkg, kustomize generator): walking the path in lexical order, each folder that
holds a kustomization file is one resource and is not walked into; every other .yaml or .yml file is a resource.
Building a fleet's ./flux the same way is what tells whether Flux could apply it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

# What kustomize reads as a folder's kustomization, as it names them.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MANIFESTS = (".yaml", ".yml")


def generated(paths: Iterable[str], folder: str) -> str | None:
    """The kustomization.yaml the controller would write into `folder` ('/'-terminated, in the repository) of a
    tree that holds the files `paths`; None when `folder` has a kustomization file of its own."""
    tree = _tree(path.removeprefix(folder) for path in paths if path.startswith(folder))
    if any(name in tree and tree[name] is None for name in KUSTOMIZATION_FILES):
        return None
    listed = "".join(f"\n- ./{resource}" for resource in _resources(tree, PurePosixPath()))
    return f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:{listed or ' []'}\n"


# A folder: each entry by name, a file as None, a folder as its own entries.
_Tree = dict[str, "_Tree | None"]


def _tree(paths: Iterable[str]) -> _Tree:
    root: _Tree = {}
    for path in paths:
        *folders, name = PurePosixPath(path).parts
        here = root
        for part in folders:
            below = here.setdefault(part, {})
            if below is None:  # a file and a folder of one name cannot both be in git
                break
            here = below
        else:
            here.setdefault(name, None)
    return root


def _resources(folder: _Tree, at: PurePosixPath) -> Iterator[str]:
    # Go's filepath.Walk, which the controller uses, visits each folder's entries sorted by name, bytewise.
    for name in sorted(folder, key=lambda entry: entry.encode("utf-8")):
        entry = folder[name]
        if entry is None:
            if name.endswith(_MANIFESTS):
                yield str(at / name)
        elif any(file in entry and entry[file] is None for file in KUSTOMIZATION_FILES):
            yield str(at / name)
        else:
            yield from _resources(entry, at / name)
