"""The command line: parse, run one command, turn failures into one line and an exit code."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from pipeline.actions import Runner
from pipeline.config import STALE_LOCK_TEXT, Settings, load_settings, state_dir
from pipeline.errors import EXIT_FAILED, EXIT_INTERRUPTED, PipelineError, SpecError, UsageError
from pipeline.redact import redact, register_env
from pipeline.report import Reporter

_EXAMPLES = {
    "new-cluster": "example: python -m pipeline new-cluster demo --spec clusters/demo.yaml",
    "approve": "example: python -m pipeline approve demo --fleet ./fleet.git",
    "merge": "example: python -m pipeline merge demo --fleet git@github.com:acme/fleet.git",
    "verify": "example: python -m pipeline verify --fleet . --ref cluster/demo",
    "keys": "example: python -m pipeline keys export > fleet-keys.asc",
    "local": "example: python -m pipeline local up",
    "fleet": "example: python -m pipeline fleet init --fleet git@github.com:acme/fleet.git",
    "schemas": "example: python -m pipeline schemas fetch",
    "list": "example: python -m pipeline list --json",
    "plan": "example: python -m pipeline plan demo --spec clusters/demo.yaml --markdown > plan.md",
    "drift": "example: python -m pipeline drift demo --spec clusters/demo.yaml --issues-repo acme/specs",
    "delete-cluster": "example: python -m pipeline delete-cluster demo --fleet ./fleet.git",
    "status": "example: python -m pipeline status demo",
    "remove-orphans": "example: python -m pipeline remove-orphans demo --spec clusters/demo.yaml",
    "unlock": "example: python -m pipeline unlock demo --lock 3f2a6c1e-0b7d-4e59-9c1a-5d8e2f4b7a90",
    "spec": "example: python -m pipeline spec check clusters/*.yaml",
}
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
JSON_HELP = "print one JSON object on stdout at the end, also on failure; progress stays on stderr"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors end like any bad input: one line, exit 2, one JSON object with --json.

    argparse makes each subcommand's parser of its parent's class, so every command, nested or added later, has it.
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pipeline",
        description="Bootstrap Cluster API clusters: AWS network by Terraform, manifests by signed commit.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text, epilog=_EXAMPLES[name])
        cmd.add_argument("--target", choices=("local", "aws"), help="where the network lives (default: local)")
        cmd.add_argument("--fleet", help="fleet repo path or git URL (default: ./fleet.git)")
        cmd.add_argument("--verbose", action="store_true", help="show Terraform's full output")
        return cmd

    new = command("new-cluster", "Create (or converge) a cluster: network, manifests, signed commit for review.")
    new.add_argument("name", metavar="NAME")
    new.add_argument("--spec", type=Path, help="cluster spec YAML (default: a small dev cluster)")
    new.add_argument(
        "--review",
        choices=("local", "github"),
        default="local",
        help="'local': branch cluster/NAME awaits `approve`; 'github': a pull request awaits approval and `merge`",
    )
    new.add_argument("--github-repo", metavar="OWNER/NAME", help="the fleet repo on GitHub (default: from --fleet)")

    new.add_argument("--force", action="store_true", help="accept replacing the VPC or subnets of a running cluster")
    new.add_argument(
        "--expect-plan",
        metavar="HASH",
        help="apply only the plan that `plan` hashed to HASH (sha256:...), else refuse with exit 5, applying nothing",
    )
    new.add_argument("--json", action="store_true", help=JSON_HELP)

    planned = command(
        "plan", "What new-cluster would change (Terraform plan, manifest diff); writes nothing; exit 4: changes."
    )
    planned.add_argument("name", metavar="NAME")
    planned.add_argument("--spec", type=Path, help="cluster spec YAML (default: a small dev cluster)")
    shown = planned.add_mutually_exclusive_group()
    shown.add_argument("--markdown", action="store_true", help="print Markdown, e.g. for a pull request comment")
    shown.add_argument("--json", action="store_true", help=JSON_HELP)

    drifted = command(
        "drift", "Plan a cluster and keep its one drift issue up to date: opened, updated, closed once in sync."
    )
    drifted.add_argument("name", metavar="NAME")
    drifted.add_argument("--spec", type=Path, help="cluster spec YAML (default: a small dev cluster)")
    drifted.add_argument(
        "--issues-repo", metavar="OWNER/NAME", help="where the drift issues live (default: $GITHUB_REPOSITORY)"
    )
    drifted.add_argument("--json", action="store_true", help=JSON_HELP)

    gone = command(
        "delete-cluster", "Delete a cluster: its signed removal for review, then (once on main) its network."
    )
    gone.add_argument("name", metavar="NAME")
    gone.add_argument("--review", choices=("local", "github"), default="local", help="how the removal is reviewed")
    gone.add_argument("--github-repo", metavar="OWNER/NAME", help="the fleet repo on GitHub (default: from --fleet)")
    gone.add_argument("--force", action="store_true", help="destroy the network even while its manifests are on main")
    gone.add_argument("--json", action="store_true", help=JSON_HELP)

    _review_and_upkeep_commands(command)
    return parser


def _review_and_upkeep_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    orphans = command(
        "remove-orphans", "Delete the VPCs and addresses tagged for a cluster that its Terraform state does not hold."
    )
    orphans.add_argument("name", metavar="NAME")
    orphans.add_argument("--json", action="store_true", help=JSON_HELP)
    _unlock_command(command)

    approve = command("approve", "Local review: verify the signed branch cluster/NAME and merge it into main.")
    target = approve.add_mutually_exclusive_group(required=True)
    target.add_argument("name", metavar="NAME", nargs="?")
    target.add_argument("--keys", action="store_true", help="approve the trusted-keys change on keys/rotation")
    approve.add_argument("--json", action="store_true", help=JSON_HELP)

    merge = command("merge", "GitHub review: fast-forward main to the approved, signed head of the pull request.")
    merge.add_argument("name", metavar="NAME")
    merge.add_argument("--github-repo", metavar="OWNER/NAME", help="the fleet repo on GitHub (default: from --fleet)")
    merge.add_argument("--json", action="store_true", help=JSON_HELP)

    verify = command("verify", "Check the fleet as the reconciler would: signature, schemas, kustomize, fleet rules.")
    verify.add_argument(
        "--ref",
        default="main",
        help="branch, commit id or refs/pull/N/head to check (trust always comes from main)",
    )
    verify.add_argument(
        "--all",
        action="store_true",
        dest="everything",
        help="check every cluster in full, not only those the branch changes (main is always checked in full)",
    )
    verify.add_argument(
        "--explain", action="store_true", help="list the security policy's rules, each with its NIST SP 800-53 control"
    )
    verify.add_argument("--json", action="store_true", help=JSON_HELP)

    keys = command("keys", "The signing keys the fleet trusts.")
    keys.add_argument("action", choices=("export", "add", "retire"), help="export, add FILE, or retire FINGERPRINT")
    keys.add_argument("subject", nargs="?", metavar="FILE|FINGERPRINT")
    keys.add_argument("--json", action="store_true", help=JSON_HELP)

    lister = command(
        "list", "Every cluster in the fleet: region, CIDR, commit and signature, review branch, state serial, last run."
    )
    lister.add_argument("--json", action="store_true", help=JSON_HELP)
    show = command("status", "One cluster: region, CIDR, commit and signature, review branch, state serial, last run.")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help=JSON_HELP)

    fetch = command("schemas", "The Cluster API and CAPA CRD schemas that validation uses.")
    fetch.add_argument("action", choices=("fetch",), help="fetch: download the pinned CRDs into the cache")
    fetch.add_argument("--json", action="store_true", help=JSON_HELP)

    founding = command(
        "fleet", "init: an empty remote becomes the fleet by a signed first commit; a fleet there is adopted as it is."
    )
    founding.add_argument("action", choices=("init",))
    founding.add_argument(
        "--flux-url",
        metavar="URL",
        help="where Flux fetches the fleet, when not at --fleet (ssh:// or https://; a path needs it; "
        "default: $PIPELINE_FLUX_URL, else --fleet)",
    )
    founding.add_argument("--json", action="store_true", help=JSON_HELP)

    local = command("local", "The embedded AWS endpoint (a moto server on loopback) for the local target.")
    local.add_argument("action", choices=("up", "down", "status"))
    local.add_argument("--json", action="store_true", help=JSON_HELP)

    cluster_spec = command(
        "spec", "The cluster spec: its JSON Schema, a dry check of spec files, a spec with defaults."
    )
    actions = cluster_spec.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("schema", help="print the spec's JSON Schema (Draft 2020-12)").add_argument(
        "--json", action="store_true", help=JSON_HELP
    )
    check = actions.add_parser("check", help="validate spec files, touching nothing; exit 2 names the first bad one")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("--json", action="store_true", help=JSON_HELP)
    show = actions.add_parser("show", help="the spec as the pipeline would act on it, every default filled in")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--spec", type=Path, help="cluster spec YAML (default: a small dev cluster)")
    show.add_argument("--json", action="store_true", help=JSON_HELP)


def _unlock_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    release = command(
        "unlock", "Release a dead run's Terraform state lock, without a prompt; refused while a run here holds it."
    )
    whose = release.add_mutually_exclusive_group(required=True)
    whose.add_argument("name", metavar="NAME", nargs="?")
    whose.add_argument("--account", action="store_true", help="the account's node IAM stack's lock, not a cluster's")
    release.add_argument("--region", help="the cluster's region (default: its last run's on this machine)")
    release.add_argument("--lock", metavar="ID", help="release only the lock of this ID, the one a lock error named")
    release.add_argument(
        "--force",
        action="store_true",
        help=f"also a lock younger than {STALE_LOCK_TEXT}, whose run may be alive on another machine, "
        "or one a run on this machine holds: for a stuck run, whose Terraform may then fail to save its state",
    )
    release.add_argument("--json", action="store_true", help=JSON_HELP)


def main(argv: Sequence[str] | None = None) -> int:
    # Started in the background of a script, Python inherits Ctrl-C ignored; Terraform listens to it
    # regardless, so an interrupted apply would be reported as Terraform's failure, not as interrupted.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    arguments = sys.argv[1:] if argv is None else list(argv)
    env = dict(os.environ)
    register_env(env)
    runner = Runner.from_env(env) if env.get("GITHUB_ACTIONS") == "true" else None
    color = runner is None and use_color(sys.stderr, env)
    try:
        args = _parser().parse_args(arguments)
    except UsageError as exc:
        # The flags did not parse, so --json is taken as written: a script still reads one JSON object.
        Reporter(runner=runner, color=color, as_json="--json" in arguments).failed(str(exc), exc.exit_code)
        return exc.exit_code
    reporter = Reporter(runner=runner, verbose=args.verbose, color=color, as_json=getattr(args, "json", False))
    try:
        settings = load_settings(
            env,
            Path.cwd(),
            target=args.target,
            fleet=args.fleet,
            github_repo=getattr(args, "github_repo", None),
            flux_url=getattr(args, "flux_url", None),
        )
        return _dispatch(args, settings, reporter)
    except SpecError as exc:
        spec = exc.file or getattr(args, "spec", None)
        reporter.failed(str(exc), exc.exit_code, file=None if spec is None else str(spec), line=exc.line)
        return exc.exit_code
    except PipelineError as exc:
        reporter.failed(str(exc), exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        reporter.failed("interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped early (`spec schema | head`): nothing is wrong, and nothing is left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            return _crashed(exc, env, reporter)
        # A full disk is the machine's state, not a defect: say where, and that a re-run picks up.
        where = f" writing {exc.filename}" if exc.filename else ""
        reporter.failed(f"{exc.strerror}{where}: free disk space and run again; the next run resumes", EXIT_FAILED)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected failure is ours, not the user's: keep the traceback
        return _crashed(exc, env, reporter)


def use_color(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Colour only for a person at a terminal who has not asked for none (https://no-color.org: set, non-empty)."""
    return stream.isatty() and not env.get("NO_COLOR")


# Each command's modules are imported when it runs, not for every command: the rest of the pipeline's
# imports (boto3, the CEL and schema libraries) cost most of a light command's time.
def _dispatch(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    if args.command == "new-cluster":
        from pipeline.commands import new_cluster

        return new_cluster.run(
            args.name, args.spec, args.review, settings, reporter, force=args.force, expect_plan=args.expect_plan
        )
    if args.command in ("plan", "drift"):
        return _planned(args, settings, reporter)
    if args.command in ("approve", "merge", "verify", "keys"):
        return _reviewing(args, settings, reporter)
    if args.command in ("delete-cluster", "remove-orphans", "unlock"):
        return _clearing(args, settings, reporter)
    if args.command in ("list", "status", "schemas", "spec"):
        return _reading(args, settings, reporter)
    return _setting_up(args, settings, reporter)


def _setting_up(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    """What comes before a first cluster: the fleet, and the local target's AWS endpoint."""
    if args.command == "fleet":
        from pipeline.commands import fleet_init

        return fleet_init.run(settings, reporter)
    from pipeline.commands import local

    return local.run(args.action, settings, reporter)


def _planned(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    if args.command == "drift":
        from pipeline.commands import drift

        return drift.run(args.name, args.spec, args.issues_repo, settings, reporter)
    from pipeline.commands import plan

    return plan.run(args.name, args.spec, args.markdown, settings, reporter)


def _reviewing(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    """Taking a reviewed change onto main, and checking the fleet as the reconciler would."""
    if args.command == "approve":
        from pipeline.commands import approve

        return approve.run(None if args.keys else args.name, settings, reporter)
    if args.command == "merge":
        from pipeline.commands import merge

        return merge.run(args.name, settings, reporter)
    if args.command == "keys":
        from pipeline.commands import keys

        return keys.run(args.action, settings, reporter, args.subject)
    from pipeline.commands import verify

    return verify.run(args.ref, settings, reporter, everything=args.everything, explain=args.explain)


def _clearing(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    """A cluster's removal, and what a killed run leaves behind: resources its state does not hold, its lock."""
    if args.command == "delete-cluster":
        from pipeline.commands import delete_cluster

        return delete_cluster.run(args.name, args.review, args.force, settings, reporter)
    if args.command == "unlock":
        from pipeline.commands import unlock

        name = None if args.account else args.name
        return unlock.run(name, settings, reporter, region=args.region, lock_id=args.lock, force=args.force)
    from pipeline.commands import remove_orphans

    return remove_orphans.run(args.name, settings, reporter)


def _reading(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    if args.command == "list":
        from pipeline.commands import list_clusters

        return list_clusters.run(settings, reporter)
    if args.command == "status":
        from pipeline.commands import status

        return status.run(args.name, settings, reporter)
    if args.command == "schemas":
        from pipeline.commands import schemas

        return schemas.run(args.action, settings, reporter)
    from pipeline.commands import specs

    if args.action == "schema":
        return specs.schema(reporter)
    if args.action == "check":
        return specs.check(args.files, reporter)
    return specs.show(args.name, args.spec, settings, reporter)


def _crashed(exc: Exception, env: Mapping[str, str], reporter: Reporter) -> int:
    log = _write_crash_log(traceback.format_exc(), state_dir(env, Path.cwd()))
    reporter.failed(f"unexpected {type(exc).__name__}: {exc} (traceback in {log})", EXIT_FAILED)
    return EXIT_FAILED


def _write_crash_log(text: str, where: Path) -> Path:
    path = where / "crash.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact(text))
    return path
