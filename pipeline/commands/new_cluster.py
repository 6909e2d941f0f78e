"""`new-cluster NAME`: the pipeline itself, stage after stage.

spec → network (Terraform) → render → validate → commit (signed, on cluster/NAME) → review.
"""

from __future__ import annotations

import concurrent.futures
import os
from dataclasses import asdict
from pathlib import Path

from pipeline import (
    access,
    allocation,
    commit,
    fleet,
    git,
    journal,
    network,
    node_iam,
    policy,
    policy_exceptions,
    pr_body,
    render,
    review,
    schemas,
    shared_journal,
    signing,
    spec,
    spec_source,
    upgrades,
    validate,
)
from pipeline.config import Settings
from pipeline.errors import EXIT_OK, Blocked, FleetFileInvalid, ManifestInvalid
from pipeline.founding import Founded
from pipeline.github import PullRequest
from pipeline.model import AwsAccess, CommitResult, Manifests, NetworkResult
from pipeline.report import Outcome, Reporter
from pipeline.spec import ClusterSpec

# Each lost claim teaches a run every claim made since, so only runs that start together can take one from it.
_CLAIM_ATTEMPTS = 12
STAGES = ("spec", "network", "render", "validate", "commit", "review")


def run(
    name: str,
    spec_path: Path | None,
    review_mode: str,
    settings: Settings,
    reporter: Reporter,
    *,
    force: bool,
    expect_plan: str | None = None,
) -> int:
    source = spec_source.load(name, spec_path)
    # Everything the inputs alone can tell is checked before anything is written anywhere.
    parsed = spec.parse(source, name)
    expect_plan = network.checked_plan_hash(expect_plan)
    if review_mode == "github":
        review.check(settings)
    with (
        journal.run(settings.journal_dir, name, "new-cluster") as record,
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as early,
    ):
        # The CRD schemas are read while the rest runs: the validate stage waits only for what is left of it.
        loading = early.submit(schemas.load, settings)
        # What AWS can tell of the spec, before the fleet or the state is touched.
        aws_access = access.for_target(settings, parsed.region)
        with source.pointing():
            zones = network.preflight(parsed, aws_access)
        # The cluster's last run, wherever it ran, is read from beside its state; this run's record is kept there.
        record.share(shared_journal.for_cluster(settings, aws_access, name))
        signer = signing.signer_for(settings)
        _report_fleet(reporter, settings, fleet.ensure_fleet(settings, signer))
        # One clone of the fleet serves the whole run; each write to it fetches first.
        with fleet.session(settings) as checkout:
            on_main = fleet.neighbours(checkout)
            others = tuple(n for n in on_main if n.cluster != name)
            mine_on_main = fleet.own_files(checkout, name)
            with source.pointing():
                upgrades.check(parsed, mine_on_main)
            management = fleet.management_cidrs(checkout)
            exceptions = _exceptions_in_force(checkout, name)
            with source.pointing():
                cluster = _claim_network(parsed, checkout, on_main)
            done = _resuming(reporter, record.unfinished(STAGES), cluster)
            record.stage("spec", cluster.fingerprint(), allocation.SpecCheckpoint(cluster.vpc_cidr))

            with reporter.stage("network"), source.pointing():
                result = _build(
                    cluster, aws_access, settings, reporter, force=force, done=done, zones=zones, reviewed=expect_plan
                )
            record.stage("network", cluster.fingerprint(), network.NetworkCheckpoint.of(result))

            with reporter.stage("render"):
                manifests = render.render(
                    cluster, result.outputs, settings.templates_dir, management, compiled=settings.compiled_templates
                )
                reporter.info(f"{len(manifests.files)} files for clusters/{name}/ and flux/clusters/{name}.yaml")
            record.stage("render", result.outputs.fingerprint(), render.RenderCheckpoint(manifests.fingerprint()))

            with reporter.stage("validate"):
                judged = _validate(
                    manifests, result, loading.result(), others, exceptions=exceptions, reporter=reporter
                )
            record.stage("validate", manifests.fingerprint(), validate.ValidateCheckpoint())

            run_id = str(record.record["run"])
            with reporter.stage("commit"):
                outcome = commit.commit(
                    manifests, checkout, signer, _trailers(run_id, cluster, result), _summary(cluster)
                )
                _report_commit(reporter, outcome)
            record.stage("commit", manifests.fingerprint(), commit.CommitCheckpoint.of(outcome))

            pull = None
            on_main_already = mine_on_main == {m.path: m.content for m in manifests.files}
            if review_mode == "github" and not on_main_already:
                with reporter.stage("review"):
                    provenance = review.provenance(checkout, outcome.commit)
                    pull = review.open_pull_request(
                        settings,
                        outcome.branch,
                        pr_body.title(cluster, new=not mine_on_main),
                        pr_body.body(cluster, result, mine_on_main, manifests, provenance, judged=judged),
                    )
                    reporter.info(f"pull request #{pull.number}: {pull.url}")
                record.stage("review", manifests.fingerprint(), review.ReviewCheckpoint(pull.url))
        record.finish("succeeded", commit=outcome.commit)
    reporter.finish(finished(cluster, result, manifests, outcome, pull=pull, on_main_already=on_main_already))
    return EXIT_OK


def _report_fleet(reporter: Reporter, settings: Settings, founded: Founded) -> None:
    """An empty remote has just become the fleet: said once, on the run that did it."""
    if founded.created:
        reporter.info(f"fleet {settings.fleet}: main at {founded.commit[:12]}, its signed first commit")


def _build(
    cluster: ClusterSpec,
    aws_access: AwsAccess,
    settings: Settings,
    reporter: Reporter,
    *,
    force: bool,
    done: network.NetworkCheckpoint | None,
    zones: tuple[str, ...],
    reviewed: str | None = None,
) -> NetworkResult:
    """The account's node IAM, then the cluster's network. With a reviewed plan to apply, the node IAM
    comes between the plan's check and its apply, so that another plan is refused before anything is applied.

    One after the other, though neither needs the other: a run killed while both applied would
    leave both states locked, and the account's lock makes every run on every machine wait.
    """

    def ensure_node_iam() -> None:
        _report_node_iam(reporter, node_iam.ensure(settings, reporter.tool_line))

    if reviewed is None:
        ensure_node_iam()
    result = network.provision(
        cluster,
        aws_access,
        settings,
        reporter.tool_line,
        force=force,
        done=done,
        zones=zones,
        expect_plan=reviewed,
        before_apply=None if reviewed is None else ensure_node_iam,
    )
    _report_network(reporter, result)
    return result


def _validate(
    manifests: Manifests,
    result: NetworkResult,
    crds: schemas.Schemas,
    others: tuple[fleet.Neighbour, ...],
    *,
    exceptions: tuple[policy_exceptions.PolicyException, ...],
    reporter: Reporter,
) -> policy_exceptions.Judged:
    unchecked = validate.validate(manifests, crds, others)
    reporter.info("CRD schemas and their CEL rules, kubectl kustomize and fleet rules pass")
    for rule in unchecked:
        reporter.info(f"not checkable offline (the API server judges it): {rule}")
    judged = _policy(manifests, result, exceptions)
    reporter.info(f"policy: {len(policy.RULES)} rules checked, {len(judged.excepted)} excepted")
    for finding, exception in judged.excepted:
        reporter.info(f"excepted until {exception.expires.isoformat()}: {finding} ({exception.reason})")
    return judged


def _exceptions_in_force(checkout: git.Checkout, name: str) -> tuple[policy_exceptions.PolicyException, ...]:
    """main's policy exceptions, refused before anything is written when one of this cluster's has expired."""
    exceptions = policy_exceptions.parse(git.read_file(checkout, fleet.MAIN, policy_exceptions.FILE))
    lapsed = [e for e in policy_exceptions.expired(exceptions, policy_exceptions.today()) if e.cluster == name]
    if lapsed:
        raise FleetFileInvalid(policy_exceptions.expiry_finding(lapsed[0]))
    return exceptions


def _policy(
    manifests: Manifests, result: NetworkResult, exceptions: tuple[policy_exceptions.PolicyException, ...]
) -> policy_exceptions.Judged:
    """The security baseline on the rendered files and the network's state; what no exception covers fails."""
    found = policy.check_manifests(manifests)
    found += policy.check_network(manifests.cluster, policy.state_resources(result.resources))
    judged = policy_exceptions.judge(found, exceptions, policy_exceptions.today())
    if judged.findings:
        raise ManifestInvalid([str(finding) for finding in judged.findings])
    return judged


def _claim_network(parsed: ClusterSpec, checkout: git.Checkout, on_main: tuple[fleet.Neighbour, ...]) -> ClusterSpec:
    """The spec with a VPC CIDR that this cluster holds in the fleet, claimed before Terraform runs.

    Runs started together on any machines read the same fleet; the claim is what keeps two of
    them from building overlapping networks. A run that loses a claim reads every claim again,
    so it learns all that were made meanwhile, not only the one it lost.
    """
    name = parsed.name
    for _ in range(_CLAIM_ATTEMPTS):
        cluster = allocation.place(parsed, allocation.known_cidrs(checkout, name, on_main))
        if fleet.claim_cidr(checkout, cluster.vpc_cidr, name) == name:
            return cluster
    raise Blocked(f"no free VPC CIDR could be claimed for '{name}' in {_CLAIM_ATTEMPTS} tries; run again")


def _resuming(
    reporter: Reporter, unfinished: journal.Unfinished | None, cluster: ClusterSpec
) -> network.NetworkCheckpoint | None:
    """The unfinished run this one picks up from, said out loud, and what it left of the network stage.

    None when there is no run to pick up, or it did not finish that stage from this spec.
    """
    if unfinished is None:
        return None
    if not unfinished.completed("spec", cluster.fingerprint()):
        reporter.info(f"{unfinished.describe()}; the spec changed since, so every stage runs again")
        return None
    reporter.info(f"resuming from stage {unfinished.stage}: {unfinished.describe()}")
    return unfinished.done("network", cluster.fingerprint(), network.NetworkCheckpoint)


def _trailers(run_id: str, cluster: ClusterSpec, result: NetworkResult) -> dict[str, str]:
    return {
        **pr_body.run_trailers(run_id, pr_body.workflow_run_url(os.environ)),
        "Spec-Fingerprint": cluster.fingerprint(),
        "Network-Fingerprint": result.outputs.fingerprint(),
        pr_body.SERIAL_TRAILER: str(result.state_serial),
        pr_body.CHANGES_TRAILER: pr_body.network_changes(result),
    }


def _summary(cluster: ClusterSpec) -> str:
    return f"{cluster.region}, Kubernetes {cluster.kubernetes_version}, VPC {cluster.vpc_cidr}"


def _report_node_iam(reporter: Reporter, built: node_iam.NodeIam) -> None:
    how = "applied the account's stack" if built.applied else "the account's, unchanged"
    reporter.info(f"node IAM ({how}): instance profiles {built.control_plane_profile}, {built.nodes_profile}")


def _report_network(reporter: Reporter, result: NetworkResult) -> None:
    outputs = result.outputs
    if result.reused:
        reporter.info(f"network as the unfinished run left it: {outputs.vpc_id} (state serial {result.state_serial})")
    elif result.changes.empty:
        reporter.info(f"network unchanged: {outputs.vpc_id} (state serial {result.state_serial})")
    else:
        reporter.info(f"{_changes(result)}: {outputs.vpc_id} {outputs.vpc_cidr}, {len(outputs.subnets)} subnets")


def _report_commit(reporter: Reporter, outcome: CommitResult) -> None:
    if outcome.changed:
        reporter.info(f"signed {outcome.commit} on {outcome.branch} with key {outcome.signer}; pushed")
    else:
        reporter.info(f"nothing to commit: {outcome.branch} already holds these manifests")


def finished(
    cluster: ClusterSpec,
    result: NetworkResult,
    manifests: Manifests,
    outcome: CommitResult,
    *,
    pull: PullRequest | None,
    on_main_already: bool,
) -> Outcome:
    """What was made and what to do next, for a person, for --json, and for the Actions job."""
    name = cluster.name
    outputs = result.outputs
    step = _next_step(name, pull=pull, on_main_already=on_main_already)
    changes = "unchanged" if result.changes.empty else _changes(result)
    committed = "signed and pushed" if outcome.changed else "already there, nothing committed"
    lines = (
        f"cluster {name}: {cluster.region}, Kubernetes {cluster.kubernetes_version}, "
        f"VPC {outputs.vpc_id} ({outputs.vpc_cidr}), zones {', '.join(_zones(result))}",
        f"network: {changes}",
        f"manifests: {len(manifests.files)} files on {outcome.branch} at {outcome.commit} ({committed})",
        "main already holds these manifests; nothing to review" if step is None else f"next: {step}",
    )
    data = {
        "cluster": name,
        "region": cluster.region,
        "kubernetes_version": cluster.kubernetes_version,
        "vpc_id": outputs.vpc_id,
        "vpc_cidr": outputs.vpc_cidr,
        "zones": list(_zones(result)),
        "subnets": [asdict(subnet) for subnet in outputs.subnets],
        "commit": outcome.commit,
        "changed": outcome.changed,
        "branch": outcome.branch,
        "pull_request": None if pull is None else pull.url,
        "next": step,
    }
    return Outcome(
        lines,
        data,
        summary=_job_summary(cluster, result, outcome, pull, step),
        outputs={"commit": outcome.commit or "", "pr_url": "" if pull is None else pull.url},
    )


def _next_step(name: str, *, pull: PullRequest | None, on_main_already: bool) -> str | None:
    """The command that takes the cluster onto main; None when it is there already."""
    if on_main_already:
        return None
    if pull is not None:
        return f"a reviewer approves {pull.url}, then: python -m pipeline merge {name}"
    return f"review and approve it: python -m pipeline approve {name}"


def _job_summary(
    cluster: ClusterSpec, result: NetworkResult, outcome: CommitResult, pull: PullRequest | None, step: str | None
) -> str:
    outputs = result.outputs
    lines = [
        f"### Cluster `{cluster.name}`",
        "",
        "| | |",
        "|---|---|",
        f"| Region | {cluster.region} |",
        f"| Kubernetes | {cluster.kubernetes_version} |",
        f"| VPC | `{outputs.vpc_id}` {outputs.vpc_cidr} |",
        f"| Zones | {', '.join(_zones(result))} |",
        f"| Terraform | {'no changes' if result.changes.empty else _changes(result)} |",
        f"| Commit | `{outcome.commit}` on `{outcome.branch}`{'' if outcome.changed else ' (unchanged)'} |",
        *([] if pull is None else [f"| Pull request | [#{pull.number}]({pull.url}) |"]),
        "",
        *pr_body.subnet_table(outputs),
        "",
        "Main already holds these manifests; nothing to review." if step is None else f"**Next:** {step}",
    ]
    return "\n".join(lines) + "\n"


def _zones(result: NetworkResult) -> tuple[str, ...]:
    return tuple(sorted({s.zone for s in result.outputs.subnets}))


def _changes(result: NetworkResult) -> str:
    changes = result.changes
    return f"{changes.add} added, {changes.change} changed, {changes.destroy} destroyed"
