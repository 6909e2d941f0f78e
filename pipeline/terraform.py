"""Terraform, run through the one subprocess wrapper: init, plan, apply, destroy, outputs, state serial."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from python_terraform import IsFlagged, Terraform

from pipeline import aws, process, redact, state_lock
from pipeline.config import Settings
from pipeline.errors import AwsThrottled, AwsUnavailable, PipelineError, StateLocked, TerraformError
from pipeline.model import PlanSummary, fingerprint

LineSink = Callable[[str], None]

# Where a provider mirror is commonly installed; the first holding hashicorp/aws wins.
MIRROR_CANDIDATES = (
    Path("~/.terraform.d/plugins"),
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
    Path("/opt/tf-plugins"),
)
_AWS_PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"
_PLAN_FILE = "network.tfplan"
_INIT_RECORD = "pipeline-init.sha256"
# Fail at once on a held lock: waiting hides a dead run's lock, reporting it gets it released.
LOCK_TIMEOUT = "0s"
# The AWS provider's words when its bounded retries ran out (aws-sdk-go-v2, provider 5.x).
_GAVE_UP = re.compile(r"exceeded maximum number of attempts, (\d+)")
_OPERATION = re.compile(r"operation error ([\w ]+: \w+)")
_API_ERROR = re.compile(r"api error (\w+):")
# Terraform's plan actions in the words its summary line uses; either order of a replacement.
_ACTIONS = {
    ("create",): "add",
    ("update",): "change",
    ("delete",): "destroy",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
}
_UNCHANGED = {("no-op",), ("read",)}


@dataclass(frozen=True)
class Workspace:
    """One cluster's Terraform: the shared stack as configuration, its own data and plan files."""

    config_dir: Path
    work_dir: Path
    env: tuple[tuple[str, str], ...]  # added to every terraform child's environment
    plugin_cache: Path | None = None  # shared with every other cluster's workspace
    # Whose state lock its Terraform takes, as a lock error names it; None: a scratch copy, which takes none.
    unlock: state_lock.Scope | None = None

    @property
    def data_dir(self) -> Path:
        return self.work_dir / ".terraform"

    @property
    def plan_file(self) -> Path:
        return self.work_dir / _PLAN_FILE


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    action: str  # add | change | destroy | replace (or Terraform's own word for a rarer action)
    # What forces a replacement: (attribute, value before, value after).
    replaced_by: tuple[tuple[str, str, str], ...] = ()
    # Replaced because an interrupted or failed apply left it half-made: nothing can be using it.
    tainted: bool = False


KNOWN_AFTER_APPLY = "(known after apply)"


@dataclass(frozen=True)
class Plan:
    summary: PlanSummary
    changed: bool  # also true when only outputs change, which still needs an apply
    file: Path
    resources: tuple[ResourceChange, ...]  # every resource the plan touches, by address
    # Every managed resource as the plan leaves it ({type, address, values}); empty when nothing changes.
    planned: tuple[Mapping[str, Any], ...] = ()
    digest: str = ""  # what an apply of the file would do, as `changes_digest` tells it


def find_mirror(settings: Settings) -> Path | None:
    if settings.provider_mirror is not None:
        return settings.provider_mirror
    for candidate in MIRROR_CANDIDATES:
        path = candidate.expanduser()
        if (path / _AWS_PROVIDER).is_dir():
            return path
    return None


def cli_config_text(mirror: Path | None, plugin_cache: Path) -> str:
    lines = []
    if mirror is not None:
        lines += [
            "provider_installation {",
            "  filesystem_mirror {",
            f"    path = {json.dumps(str(mirror))}",
            "  }",
            "}",
        ]
    lines.append(f"plugin_cache_dir = {json.dumps(str(plugin_cache))}")
    return "\n".join(lines) + "\n"


def write_cli_config(settings: Settings) -> Path:
    """The project's own CLI config, so a user's ~/.terraformrc cannot change what gets installed."""
    settings.plugin_cache.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir / "terraform" / "cli.tfrc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cli_config_text(find_mirror(settings), settings.plugin_cache))
    return path


def workspace(
    settings: Settings,
    cluster: str,
    stack: str,
    aws_env: Mapping[str, str] | None = None,
    *,
    unlock: state_lock.Scope | None = None,
) -> Workspace:
    """The work dir of `cluster` for `stack`; `unlock` says whose lock it takes (default: the cluster's)."""
    work_dir = settings.terraform_work_dir(cluster)
    work_dir.mkdir(parents=True, exist_ok=True)
    stack_dir = settings.terraform_dir / "stacks" / stack
    scope = unlock or state_lock.Scope(cluster, settings.target)
    return _workspace(stack_dir, work_dir, write_cli_config(settings), aws_env, settings.plugin_cache, unlock=scope)


def scratch_workspace(
    settings: Settings, stack: str, root: Path, aws_env: Mapping[str, str], *, local_backend: bool
) -> Workspace:
    """A throwaway workspace under `root` that writes nowhere else: not the stack, not the state dir.

    The stacks and modules are copied together so relative module sources still resolve. With
    `local_backend`, an override file points the copy at an empty local state, so planning a
    cluster that has no state yet needs no bucket.
    """
    copy = root / "terraform"
    shutil.copytree(settings.terraform_dir, copy, ignore=shutil.ignore_patterns(".terraform"))
    config_dir = copy / "stacks" / stack
    if local_backend:
        override = {"terraform": {"backend": {"local": {"path": str(root / "empty.tfstate")}}}}
        (config_dir / "backend_override.tf.json").write_text(json.dumps(override))
    settings.plugin_cache.mkdir(parents=True, exist_ok=True)
    cli_config = root / "cli.tfrc"
    cli_config.write_text(cli_config_text(find_mirror(settings), settings.plugin_cache))
    work_dir = root / "work"
    work_dir.mkdir()
    return _workspace(config_dir, work_dir, cli_config, aws_env, settings.plugin_cache)


def _workspace(
    config_dir: Path,
    work_dir: Path,
    cli_config: Path,
    aws_env: Mapping[str, str] | None,
    plugin_cache: Path,
    *,
    unlock: state_lock.Scope | None = None,
) -> Workspace:
    env = {
        **(aws_env or {}),
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_DATA_DIR": str(work_dir / ".terraform"),
        # The user's own defaults for terraform commands must not leak into ours.
        "TF_CLI_ARGS": "",
        "TF_WORKSPACE": "default",
    }
    return Workspace(config_dir, work_dir, tuple(sorted(env.items())), plugin_cache, unlock)


def init(ws: Workspace, backend_config: Mapping[str, str], on_line: LineSink | None = None) -> None:
    """Initialise the work dir, unless it already is for this very backend, stack and lock file."""
    wanted = _init_fingerprint(ws, backend_config)
    record = ws.data_dir / _INIT_RECORD
    if _initialised(ws, record, wanted):
        return
    # -reconfigure: the local endpoint's address changes between sessions; the bucket and key
    # stay derived from the cluster, so this never points a cluster at another's state.
    # -lockfile=readonly: the committed lock file is shared by every cluster; never rewrite it.
    with _cache_lock(ws.plugin_cache):
        _run(
            ws,
            "init",
            on_line,
            input=False,
            no_color=IsFlagged,
            reconfigure=IsFlagged,
            lockfile="readonly",
            backend_config=dict(backend_config),
        )
    record.write_text(wanted)


def _init_fingerprint(ws: Workspace, backend_config: Mapping[str, str]) -> str:
    """What `init` depends on: the backend settings, the CLI config, and the stack's own files (its
    module calls and the provider lock file); the modules' contents are read in place at each run."""
    digest = hashlib.sha256(json.dumps(sorted(backend_config.items())).encode())
    cli_config = Path(dict(ws.env).get("TF_CLI_CONFIG_FILE", ""))
    digest.update(cli_config.read_bytes() if cli_config.is_file() else b"")
    for path in sorted(ws.config_dir.iterdir()):
        if path.is_file():
            digest.update(f"\0{path.name}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def _initialised(ws: Workspace, record: Path, wanted: str) -> bool:
    """The work dir was initialised for `wanted`, and what that init left is still there."""
    try:
        if record.read_text() != wanted:
            return False
    except OSError:
        return False
    providers = list((ws.data_dir / "providers").glob("*/*/*/*/*/terraform-provider-*"))
    # A provider is a link into the shared plugin cache, which may have been emptied since.
    return (ws.data_dir / "terraform.tfstate").is_file() and bool(providers) and all(p.exists() for p in providers)


@contextmanager
def _cache_lock(cache: Path | None) -> Iterator[None]:
    """Terraform's plugin cache is not safe for concurrent installs: clusters initialised together take turns."""
    if cache is None:
        yield
        return
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".pipeline-init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# The last line of every successful apply, in every Terraform release since 0.12.
_APPLIED = re.compile(r"Apply complete! Resources: (\d+) added, (\d+) changed, (\d+) destroyed")


def plan(
    ws: Workspace,
    var_file: Path,
    on_line: LineSink | None = None,
    *,
    lock: bool = True,
    lock_timeout: str = LOCK_TIMEOUT,
) -> Plan:
    """A saved plan. `lock=False` for a plan that is only shown: a plan never writes the state,
    and the lock file it would take leaves versions behind in a versioned bucket."""
    locking: dict[str, object] = {"lock_timeout": lock_timeout} if lock else {"lock": False}
    result = _run(
        ws,
        "plan",
        on_line,
        ok_codes=(0, 2),
        input=False,
        no_color=IsFlagged,
        detailed_exitcode=IsFlagged,
        out=str(ws.plan_file),
        var_file=str(var_file),
        **locking,
    )
    if result.returncode == 0:
        # No changes at all (-detailed-exitcode): nothing for `show -json` to describe.
        return Plan(PlanSummary(0, 0, 0), changed=False, file=ws.plan_file, resources=(), digest=changes_digest({}))
    shown = json.loads(_run(ws, "show", None, str(ws.plan_file), json=IsFlagged).stdout)
    return Plan(
        summary_of(shown),
        changed=True,
        file=ws.plan_file,
        resources=resource_changes(shown),
        planned=tuple(planned_resources(shown)),
        digest=changes_digest(shown),
    )


def changes_digest(plan_json: Mapping[str, Any]) -> str:
    """A hash of what applying the plan would do, the same for the same change on any machine and run.

    Each acted-on resource's address, actions and after-values (those known only after apply
    named as such), and each changed output's name and actions; sorted, and without the plan's
    timestamp, Terraform's version or the variables, which name the endpoint of this session.
    Sensitive values are hashed as a mark, not as themselves: the hash is posted publicly.
    """
    resources = []
    for rc in plan_json.get("resource_changes") or []:
        change = rc.get("change") or {}
        if tuple(change.get("actions") or ()) in _UNCHANGED:
            continue
        resources.append(
            {
                "address": rc["address"],
                "actions": change.get("actions"),
                "after": _masked(change.get("after"), change.get("after_sensitive")),
                "after_unknown": change.get("after_unknown"),
            }
        )
    outputs = sorted(
        (name, out.get("actions"))
        for name, out in (plan_json.get("output_changes") or {}).items()
        if tuple(out.get("actions") or ()) not in _UNCHANGED
    )
    return fingerprint({"resources": sorted(resources, key=lambda r: str(r["address"])), "outputs": outputs})


def _masked(value: Any, sensitive: Any) -> Any:
    """`value` with every part that Terraform's parallel `after_sensitive` marks true replaced by a mark."""
    if sensitive is True:
        return "(sensitive)"
    if isinstance(value, Mapping) and isinstance(sensitive, Mapping):
        return {key: _masked(item, sensitive.get(key)) for key, item in value.items()}
    if isinstance(value, list) and isinstance(sensitive, list):
        return [_masked(item, sensitive[i] if i < len(sensitive) else None) for i, item in enumerate(value)]
    return value


def planned_resources(plan_json: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every managed resource the plan keeps or makes, with its values after the plan; a value known only
    after apply (an id, an ARN) is there as KNOWN_AFTER_APPLY rather than missing."""
    for rc in plan_json.get("resource_changes") or []:
        change = rc.get("change") or {}
        if rc.get("mode") != "managed" or change.get("actions") == ["delete"]:
            continue
        values = dict(change.get("after") or {})
        unknown = change.get("after_unknown") or {}
        values.update({key: KNOWN_AFTER_APPLY for key, is_unknown in unknown.items() if is_unknown is True})
        yield {"type": rc["type"], "address": rc["address"], "values": values}


def summary_of(plan_json: Mapping[str, Any]) -> PlanSummary:
    """Counts as terraform prints them: a replacement is one add and one destroy."""
    actions = [rc["change"]["actions"] for rc in plan_json.get("resource_changes") or []]
    return PlanSummary(
        add=sum("create" in a for a in actions),
        change=sum("update" in a for a in actions),
        destroy=sum("delete" in a for a in actions),
    )


def resource_changes(plan_json: Mapping[str, Any]) -> tuple[ResourceChange, ...]:
    """Every managed resource the plan acts on; no-ops and data reads are left out."""
    changes = []
    for rc in plan_json.get("resource_changes") or []:
        action = _action(rc["change"]["actions"])
        if rc.get("mode", "managed") != "managed" or action is None:
            continue
        tainted = rc.get("action_reason") == "replace_because_tainted"
        changes.append(ResourceChange(rc["address"], rc["type"], action, _replaced_by(rc), tainted))
    return tuple(sorted(changes, key=lambda c: c.address))


def _action(actions: list[str]) -> str | None:
    key = tuple(actions)
    return None if key in _UNCHANGED else _ACTIONS.get(key, "-".join(actions))


def _replaced_by(rc: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    change = rc["change"]
    before, after = change.get("before") or {}, change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    found = []
    for path in change.get("replace_paths") or []:
        name = str(path[0])
        new = "(known after apply)" if unknown.get(name) is True else str(after.get(name))
        found.append((name, str(before.get(name)), new))
    return tuple(found)


def apply(ws: Workspace, saved: Plan, on_line: LineSink | None = None, *, lock_timeout: str = LOCK_TIMEOUT) -> None:
    _run(
        ws,
        "apply",
        on_line,
        str(saved.file),
        input=False,
        no_color=IsFlagged,
        lock_timeout=lock_timeout,
    )


def apply_unreviewed(
    ws: Workspace, var_file: Path, on_line: LineSink | None = None, *, lock_timeout: str = LOCK_TIMEOUT
) -> PlanSummary:
    """Plan and apply in one command, for changes nobody reviews plan by plan; what it changed."""
    result = _run(
        ws,
        "apply",
        on_line,
        input=False,
        no_color=IsFlagged,
        lock_timeout=lock_timeout,
        auto_approve=IsFlagged,
        var_file=str(var_file),
    )
    counts = _APPLIED.search(result.stdout)
    return PlanSummary(*(int(n) for n in counts.groups())) if counts else PlanSummary(0, 0, 0)


def destroy(ws: Workspace, var_file: Path, on_line: LineSink | None = None) -> None:
    _run(
        ws,
        "destroy",
        on_line,
        input=False,
        no_color=IsFlagged,
        lock_timeout=LOCK_TIMEOUT,
        auto_approve=IsFlagged,
        var_file=str(var_file),
    )


class Outputs(NamedTuple):
    values: dict[str, Any]  # every output not marked sensitive
    sensitive: frozenset[str]  # the names of those marked sensitive; their values never leave Terraform


class State(NamedTuple):
    """The stack's state as one `state pull` gives it: serial, outputs and the resources it tracks."""

    serial: int
    outputs: Outputs
    resources: tuple[Mapping[str, Any], ...]

    def tracked_ids(self, resource_types: Iterable[str]) -> dict[str, frozenset[str]]:
        """For each of `resource_types`, the ids of every managed resource of it, in any module."""
        managed = [r for r in self.resources if r.get("mode") == "managed"]
        return {
            kind: frozenset(
                str(instance["attributes"]["id"])
                for resource in managed
                if resource.get("type") == kind
                for instance in resource.get("instances", [])
            )
            for kind in resource_types
        }


def pulled(ws: Workspace) -> State:
    """The state in one call; sensitive outputs' values are only remembered, to be masked wherever they appear."""
    return state_of(_state(ws))


def state_of(raw: Mapping[str, Any] | None) -> State:
    """A state file's content as read from its backend (None: no state yet), as `pulled` gives it."""
    raw = raw or {}
    return State(int(raw.get("serial", 0)), _outputs(raw.get("outputs") or {}), tuple(raw.get("resources") or ()))


def outputs(ws: Workspace) -> Outputs:
    """The stack's outputs; a sensitive one's value is only remembered, to be masked wherever it would appear."""
    return _outputs(json.loads(_run(ws, "output", None, json=IsFlagged).stdout))


def _outputs(raw: Mapping[str, Any]) -> Outputs:
    sensitive = {name for name, out in raw.items() if out.get("sensitive")}
    redact.register(_strings(raw[name]["value"] for name in sensitive))
    return Outputs({n: out["value"] for n, out in raw.items() if n not in sensitive}, frozenset(sensitive))


def _strings(values: Iterable[object]) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            yield from _strings(value.values())
        elif isinstance(value, list | tuple):
            yield from _strings(value)
        elif value is not None:
            yield json.dumps(value)


def _state(ws: Workspace) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(_run(ws, "state pull", None).stdout or "{}")
    return state


def _run(
    ws: Workspace,
    command: str,
    on_line: LineSink | None,
    *args: str,
    ok_codes: tuple[int, ...] = (0,),
    **options: object,
) -> process.Result:
    argv = Terraform(working_dir=str(ws.config_dir)).generate_cmd_string(command, *args, **options)
    result = process.run(argv, cwd=ws.config_dir, env=dict(ws.env), check=False, on_line=on_line)
    if result.returncode not in ok_codes:
        raise failure(argv, result.stdout + result.stderr, ws)
    return result


def failure(argv: list[str], output: str, ws: Workspace) -> PipelineError:
    """One line a user can act on: a held lock names the `unlock` that releases it, which prompts for nothing."""
    command = " ".join(argv[:2])
    lock = state_lock.from_output(output)
    if lock is not None:
        return StateLocked(f"{command}: {state_lock.held_message(lock, ws.unlock)}")
    gave_up = _GAVE_UP.search(output)
    if gave_up is not None:
        return _aws_gave_up(command, output, gave_up.group(1))
    return TerraformError(f"{command} failed: {error_lines(output) or 'no error message'}")


def _aws_gave_up(command: str, output: str, attempts: str) -> PipelineError:
    """The provider's bounded retries ran out: throttling (exit 3, run again later) or no answer."""
    operation = _OPERATION.search(output)
    call = operation.group(1) if operation else "an AWS call"
    api = _API_ERROR.search(output)
    if api is not None and api.group(1) in aws.THROTTLING_CODES:
        return AwsThrottled(
            f"{command}: AWS throttled {call} after {attempts} attempts ({api.group(1)}); "
            f"wait and run again; {aws.CONTINUES}"
        )
    why = f"{api.group(1)}" if api is not None else "no answer"
    return AwsUnavailable(
        f"{command}: {call} failed after {attempts} attempts ({why}); "
        f"check the network and the AWS endpoint, then run again; {aws.CONTINUES}"
    )


def error_lines(output: str) -> str:
    """Each distinct error's summary, location and first paragraph of detail, all on one line."""
    blocks: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for raw in output.splitlines():
        line = raw.strip(" \t│╷╵")
        if line.startswith(("Error:", "Warning:")):
            current = [[line.removeprefix("Error:").strip()]] if line.startswith("Error:") else None
            if current is not None:
                blocks.append(current)
        elif current is not None and line:
            current[-1].append(line)
        elif current is not None and current[-1]:
            current.append([])
    messages: list[str] = []
    for summary, *rest in ([p for p in block if p] for block in blocks):
        where = next((p[0].rstrip(":") for p in rest if p[0].startswith("on ")), None)
        detail = next((" ".join(p) for p in rest if not p[0].startswith("on ")), None)
        message = " ".join(summary).rstrip(".") + (f" ({where})" if where else "") + (f": {detail}" if detail else "")
        if message not in messages:
            messages.append(message)
    return " | ".join(messages)
