"""Faults while committing, with real parts: the fleet refusing the push, gpg failing, the disk full.

Each fault must leave nothing half-written: the fleet repository byte for byte as it was (and no
unsigned commit reachable from any ref), no throwaway clone or partial branch in the temporary
directory, the state dir unchanged, no gpg-agent left running; and once the fault is gone, the
same call converges to a signed commit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import signing
from pipeline.approve import approve_cluster
from pipeline.config import Settings
from pipeline.errors import GitError, PipelineError, PushRejected, SigningError
from pipeline.model import CommitResult, Manifest, Manifests
from tests import fleet_calls
from tests.fixtures import fleet_git, fleet_refs

TRAILERS = {"Pipeline-Run": "run-faults", "Spec-Fingerprint": "sha256:faults"}
HOOK_REASON = "fleet policy: pushes are frozen until the release is out"
FILE_SIZE_LIMIT = 256 * 1024  # bytes any one file may grow to while the disk is "full"
BIG_MANIFEST_LINES = 100_000  # "  key: value\n" each: 1.3 MB, far over the limit, yet a few KB as a git object
# Random bytes do not compress: as a git object too, this is far over the limit.
INCOMPRESSIBLE = base64.b64encode(hashlib.shake_256(b"dense").digest(768 * 1024)).decode("ascii")

Operation = Callable[[], CommitResult]


def manifests(name: str = "demo", big: bool = False, dense: bool = False) -> Manifests:
    files = {
        f"clusters/{name}/cluster.yaml": f"kind: Cluster\nmetadata: {{name: {name}}}\n",
        f"clusters/{name}/kustomization.yaml": "resources: [cluster.yaml]\n",
        f"flux/clusters/{name}.yaml": f"kind: Kustomization\nspec: {{path: ./clusters/{name}}}\n",
    }
    if big:
        files[f"clusters/{name}/big.yaml"] = "kind: ConfigMap\ndata:\n" + "  key: value\n" * BIG_MANIFEST_LINES
    if dense:
        files[f"clusters/{name}/dense.yaml"] = f"kind: ConfigMap\ndata:\n  blob: {INCOMPRESSIBLE}\n"
    return Manifests(name, tuple(Manifest(path, files[path]) for path in sorted(files)))


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under `root` by relative path: a file's sha256, a link's target, or its kind."""
    entries: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                kind = f"link->{os.readlink(path)}"
            elif stat.S_ISREG(mode):
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                kind = "dir" if stat.S_ISDIR(mode) else "special"
            entries[str(path.relative_to(root))] = kind
    return entries


def unsigned_commits(settings: Settings) -> list[str]:
    """Commits reachable from any fleet ref whose signature is not from a key main trusts."""
    keys = fleet_calls.trusted_keys(settings)
    bad = []
    for sha in fleet_git(settings.fleet, "rev-list", "--all").split():
        try:
            signing.verify_commit(Path(settings.fleet), sha, keys)
        except PipelineError:
            bad.append(sha)
    return bad


def live_agents(under: Path) -> list[str]:
    """Running (not zombie) gpg-agents whose home is under `under`, by command line."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv[0].endswith(b"gpg-agent") or b"--homedir" not in argv:
            continue
        home = os.path.realpath(argv[argv.index(b"--homedir") + 1].decode())
        if home.startswith(str(under)):
            found.append(" ".join(a.decode() for a in argv))
    return found


def agents_stopped(under: Path) -> list[str]:
    """The gpg-agents under `under` still running after a grace period for those told to stop to exit.

    `gpgconf --kill` returns once the agent is told; the agent then removes its sockets and exits.
    """
    deadline = time.monotonic() + 5
    while (agents := live_agents(under)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return agents


def short_links_into(under: Path) -> list[str]:
    """Short GnuPG home links in /tmp (signing.gpg_env's, for long homes) still pointing under `under`."""
    return [str(link) for link in Path("/tmp").glob("gpg*/h") if os.path.realpath(link).startswith(str(under))]


@dataclass(frozen=True)
class Scene:
    """A fleet with its signer, and where this test's throwaway clones and verify homes go."""

    settings: Settings
    signer: signing.Signer
    temp: Path  # the process's temporary directory for this test
    root: Path  # the test's tmp_path: the fleet, the state dir, the GnuPG homes are below it

    @property
    def fleet(self) -> Path:
        return Path(self.settings.fleet)


@pytest.fixture
def scene(settings: Settings, fleet_signer: signing.Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return Scene(settings, fleet_signer, temp, tmp_path)


@dataclass(frozen=True)
class Before:
    refs: str
    fleet: dict[str, str]
    state: dict[str, str]


def before(scene: Scene) -> Before:
    return Before(fleet_refs(scene.fleet), tree_digest(scene.fleet), tree_digest(scene.settings.state_dir))


def nothing_half_written(scene: Scene, was: Before) -> str:
    """Assert the fleet, the temporary directory and the state are as they were; what was compared."""
    agents = agents_stopped(scene.root)
    assert agents == []
    refs = fleet_refs(scene.fleet)
    assert refs == was.refs
    assert tree_digest(scene.fleet) == was.fleet  # not one new object, quarantine or lock file either
    assert tree_digest(scene.settings.state_dir) == was.state
    left = sorted(os.listdir(scene.temp))
    assert left == []  # the throwaway clone, with its branch, and any verify home are gone
    links = short_links_into(scene.root)
    assert links == []
    return (
        f"fleet's {len(refs.splitlines())} refs and every file byte-identical, "
        f"state dir {len(was.state)} paths unchanged, {len(left)} left in the temp dir, {len(agents)} gpg-agents left"
    )


def all_signed(scene: Scene) -> str:
    """Assert every commit reachable from a fleet ref is signed by a key main trusts; how many."""
    reachable = fleet_git(scene.fleet, "rev-list", "--all").split()
    assert unsigned_commits(scene.settings) == []
    return f"{len(reachable)} reachable commits all signed by a trusted key"


def converges(scene: Scene, was: Before, again: Operation) -> str:
    """Assert that with the fault gone the same call pushes a trusted, signed review branch; what it pushed."""
    result = again()
    assert result.changed
    assert result.commit is not None
    assert fleet_git(scene.fleet, "rev-parse", f"refs/heads/{result.branch}").strip() == result.commit
    keys = fleet_calls.trusted_keys(scene.settings)
    assert signing.verify_commit(scene.fleet, result.commit, keys) == result.signer
    assert unsigned_commits(scene.settings) == []
    moved = set(fleet_refs(scene.fleet).splitlines()) ^ set(was.refs.splitlines())
    assert {line.split()[0] for line in moved} == {f"refs/heads/{result.branch}"}
    assert os.listdir(scene.temp) == []
    assert agents_stopped(scene.root) == []
    return f"fault removed, the same call pushed {result.branch}, signed and verified"


def operation(op: str, scene: Scene) -> Operation:
    """The call under test; a removal needs the cluster on main first, so that is arranged here."""
    settings, signer = scene.settings, scene.signer
    if op == "commit":
        return lambda: fleet_calls.commit(manifests(), settings, signer, TRAILERS, "create")
    fleet_calls.commit(manifests(), settings, signer, TRAILERS, "create")
    approve_cluster("demo", settings, signer)
    return lambda: fleet_calls.remove("demo", settings, signer, TRAILERS, "delete")


def error_head(kind: str, exit_code: int, message: str, scene: Scene) -> str:
    """The error as observed, its message's head with the test's own tmp_path shortened."""
    shown = message.replace(str(scene.root), "<tmp_path>")
    return f"{kind} (exit {exit_code}): {shown[:150]}{'...' if len(shown) > 150 else ''}"


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(
            "commit",
            marks=pytest.mark.reliability("fault", "the fleet's pre-receive hook rejects the push of a new cluster"),
        ),
        pytest.param(
            "remove",
            marks=pytest.mark.reliability("fault", "the fleet's pre-receive hook rejects the push of a removal"),
        ),
    ],
)
def test_a_push_the_fleet_rejects_leaves_nothing_behind(
    op: str, scene: Scene, record_property: Callable[[str, object], None]
) -> None:
    act = operation(op, scene)
    hook = scene.fleet / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{HOOK_REASON}' >&2\nexit 1\n")
    hook.chmod(0o755)
    was = before(scene)

    with pytest.raises(GitError) as raised:
        act()

    error = raised.value
    assert not isinstance(error, PushRejected)  # a policy refusal is not "it moved meanwhile": a re-run won't pass
    message = str(error)
    assert "\n" not in message
    assert f"{scene.fleet} refused the push of cluster/demo: pre-receive hook declined: {HOOK_REASON}" in message
    assert message.endswith("fix what it reports (or ask the fleet's maintainers), then run again")
    untouched = nothing_half_written(scene, was)
    signed = all_signed(scene)

    hook.unlink()
    after = converges(scene, was, act)
    head = error_head(type(error).__name__, error.exit_code, message, scene)
    record_property("outcome", f"{head}; {untouched}; {signed}; {after}")


@pytest.mark.parametrize(
    ("fault", "op"),
    [
        pytest.param(
            "gpg-fails",
            "commit",
            marks=pytest.mark.reliability("fault", "gpg exits 2 when git asks it to sign a new cluster's commit"),
        ),
        pytest.param(
            "gpg-fails",
            "remove",
            marks=pytest.mark.reliability("fault", "gpg exits 2 when git asks it to sign a removal's commit"),
        ),
        pytest.param(
            "no-secret-key",
            "commit",
            marks=pytest.mark.reliability("fault", "the signing key's secret part is gone from its GnuPG home"),
        ),
    ],
)
def test_gpg_failing_pushes_no_unsigned_commit(
    fault: str,
    op: str,
    scene: Scene,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    act = operation(op, scene)
    shims = scene.root / "shims"
    secret_keys = scene.settings.gnupg_home / "private-keys-v1.d"
    aside = scene.root / "secret-keys-aside"
    if fault == "gpg-fails":
        # git runs gpg.program=gpg (pinned in every clone) from PATH: this gpg comes first, and fails.
        shims.mkdir()
        (shims / "gpg").write_text(
            "#!/bin/sh\necho 'gpg: signing failed: Inappropriate ioctl for device' >&2\nexit 2\n"
        )
        (shims / "gpg").chmod(0o755)
        monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    else:
        # The fixtures stopped the home's agent: asked to sign, gpg finds no secret key in the home.
        shutil.move(secret_keys, aside)
        secret_keys.mkdir(mode=0o700)
    was = before(scene)

    with pytest.raises(SigningError) as raised:
        act()

    message = str(raised.value)
    assert "\n" not in message
    assert f"cannot sign a commit on cluster/demo with key {scene.signer.fingerprint}" in message
    assert "gpg failed to sign the data" in message
    listing = f"GNUPGHOME={scene.settings.gnupg_home} gpg --list-secret-keys"
    assert message.endswith(f"check that the key's secret part is available ('{listing}')")
    untouched = nothing_half_written(scene, was)

    if fault == "gpg-fails":
        monkeypatch.setenv("PATH", os.environ["PATH"].removeprefix(f"{shims}{os.pathsep}"))
    else:
        shutil.rmtree(secret_keys)
        shutil.move(aside, secret_keys)
    signed = all_signed(scene)  # checked with a working gpg: the failing one cannot verify either
    after = converges(scene, was, act)
    head = error_head("SigningError", raised.value.exit_code, message, scene)
    record_property("outcome", f"{head}; {untouched}; {signed}; {after}")


# The commit runs in a child whose files may not grow past FILE_SIZE_LIMIT: a write past it fails
# with EFBIG as a write to a full disk fails with ENOSPC. Python ignores SIGXFSZ itself; git runs
# through a wrapper that ignores it too (subprocess resets it for every child), so git also gets
# the error rather than being killed. Like the CLI, the child turns a PipelineError into one line
# and its exit code; anything else escapes as a traceback.
_CHILD = f"""
import json, os, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_FSIZE, ({FILE_SIZE_LIMIT}, {FILE_SIZE_LIMIT}))
from pipeline import signing
from pipeline.config import load_settings
from pipeline.errors import PipelineError
from tests import fleet_calls
from tests.test_commit_faults import TRAILERS, manifests
settings = load_settings(os.environ, Path.cwd())
cluster = manifests(dense=sys.argv[1] == "dense")
try:
    done = fleet_calls.commit(cluster, settings, signing.signer_for(settings), TRAILERS, "create")
except PipelineError as failed:
    print(json.dumps({{"error": type(failed).__name__, "exit": failed.exit_code, "message": str(failed)}}))
    sys.exit(failed.exit_code)
print(json.dumps({{"commit": done.commit}}))
"""


def git_ignoring_sigxfsz(folder: Path) -> Path:
    real = shutil.which("git")
    assert real is not None
    folder.mkdir()
    wrapper = folder / "git"
    wrapper.write_text(f"#!/bin/sh\ntrap '' XFSZ\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    return folder


def run_child(scene: Scene, which: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The commit of cluster demo (`which`: "dense" or "small") in a child whose files cannot grow past the limit."""
    wrappers = git_ignoring_sigxfsz(scene.root / "wrappers")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, which],
        cwd=Path(__file__).resolve().parent.parent,
        env={
            **os.environ,
            "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}",
            "TMPDIR": str(scene.temp),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in child.stderr, child.stderr
    return child, json.loads(child.stdout)


@pytest.mark.reliability("fault", "the disk fills while the pipeline writes a cluster's manifests")
def test_a_full_disk_fails_in_one_line_and_leaves_nothing_behind(
    scene: Scene, record_property: Callable[[str, object], None]
) -> None:
    was = before(scene)

    child, outcome = run_child(scene, "dense")

    assert (outcome.get("error"), outcome.get("exit"), child.returncode) == ("GitError", 1, 1), outcome
    message = str(outcome["message"])
    assert "\n" not in message
    assert message.startswith("cannot build the fleet's new tree: ")
    assert "File too large" in message
    assert message.endswith(
        f"free disk space in {scene.temp}, where the fleet's temporary clones go (TMPDIR moves them), and run again"
    )
    untouched = nothing_half_written(scene, was)
    signed = all_signed(scene)
    after = converges(
        scene, was, lambda: fleet_calls.commit(manifests(dense=True), scene.settings, scene.signer, TRAILERS, "create")
    )
    head = error_head(str(outcome["error"]), int(outcome["exit"]), message, scene)
    record_property("outcome", f"child exited {child.returncode}, no traceback: {head}; {untouched}; {signed}; {after}")


@pytest.mark.reliability("fault", "main holds more than the disk has room for: nothing is checked out")
def test_a_fleet_larger_than_the_room_left_still_takes_a_commit(
    scene: Scene, record_property: Callable[[str, object], None]
) -> None:
    # Main already holds a cluster whose files exceed the room left; the new cluster is small.
    fleet_calls.commit(manifests("bulk", big=True), scene.settings, scene.signer, TRAILERS, "create")
    approve_cluster("bulk", scene.settings, scene.signer)

    child, outcome = run_child(scene, "small")

    assert child.returncode == 0, outcome
    landed = fleet_git(scene.settings.fleet, "rev-parse", "refs/heads/cluster/demo").strip()
    assert landed == outcome["commit"]
    signed = all_signed(scene)
    record_property("outcome", f"child exited 0 and pushed cluster/demo at {landed[:12]}; {signed}")
