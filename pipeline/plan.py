"""What a run of new-cluster would change: Terraform's plan and the manifest diff against main.

Nothing is written: no commit, no push, no state, no bucket, no journal entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline import (
    access,
    allocation,
    fleet,
    git,
    network,
    policy,
    policy_exceptions,
    pr_body,
    render,
    spec,
    spec_source,
)
from pipeline.config import Settings
from pipeline.model import NetworkPlan
from pipeline.spec import ClusterSpec

# Terraform's own marks for each action, so the plan reads like `terraform plan`.
_MARKS = {"add": "+", "change": "~", "destroy": "-", "replace": "-/+"}
_FENCE = "````"  # longer than any backtick run a YAML file is likely to hold
_TRUNCATED = "\n… diff truncated\n"
_NOT_RENDERED = "rendered once the network exists (a new cluster has no VPC or subnet ids yet)"
# What a workflow reads back from the comment: the cluster's name and its plan's hash, one marker per cluster.
HASH_MARKER = "<!-- fleet-pipeline-plan-hash {name} {plan_hash} -->"


@dataclass(frozen=True)
class ClusterPlan:
    cluster: ClusterSpec
    network: NetworkPlan
    files: tuple[tuple[str, str], ...] | None  # (path, added | changed | removed) against main; None: not rendered
    diff: str  # unified diff against main
    policy: tuple[str, ...] = ()  # the policy's findings that no exception on main covers, one line each

    @property
    def changed(self) -> bool:
        return not self.network.summary.empty or self.files is None or bool(self.files)

    @property
    def plan_hash(self) -> str:
        """What `new-cluster --expect-plan` compares before it applies anything."""
        return network.plan_hash(self.cluster, self.network.digest)


def plan_cluster(
    name: str, source: spec_source.SpecSource, settings: Settings, on_line: Callable[[str], None] | None = None
) -> ClusterPlan:
    # Everything the inputs alone can tell is checked before any endpoint is reached.
    parsed = spec.parse(source, name)
    with fleet.reading(settings) as checkout, source.pointing():
        cluster = allocation.place(parsed, allocation.known_in(checkout, name))
        mine = {} if checkout is None else fleet.own_files(checkout, name)
        management = fleet.initial_management_cidrs(settings) if checkout is None else fleet.management_cidrs(checkout)
        exceptions = (
            ()
            if checkout is None
            else policy_exceptions.parse(git.read_file(checkout, fleet.MAIN, policy_exceptions.FILE))
        )
    with source.pointing():
        planned = network.plan(cluster, access.for_target(settings, cluster.region), settings, on_line)
    # The network rules judge the network as the plan leaves it; the manifest rules, the files it renders to.
    found = policy.check_network(name, policy.plan_resources(planned.planned))
    if planned.outputs is None:
        return ClusterPlan(cluster, planned, None, "", _unexcepted(found, exceptions))
    manifests = render.render(
        cluster, planned.outputs, settings.templates_dir, management, compiled=settings.compiled_templates
    )
    files, diff = pr_body.manifest_diff(mine, manifests)
    found += policy.check_manifests(manifests)
    return ClusterPlan(cluster, planned, files, diff, _unexcepted(found, exceptions))


def _unexcepted(
    found: list[policy.Finding], exceptions: tuple[policy_exceptions.PolicyException, ...]
) -> tuple[str, ...]:
    return tuple(str(f) for f in policy_exceptions.judge(found, exceptions, policy_exceptions.today()).findings)


def to_text(plan: ClusterPlan) -> str:
    lines = [_heading(plan.cluster), "", f"Network: {_counts(plan.network)}"]
    lines += [f"  {_MARKS.get(action, action):>3} {address}" for address, action in plan.network.resources]
    if plan.network.replaces_network:
        lines.append(f"  ! {_refusal(plan.network)}")
    lines.append("")
    if plan.files is None:
        lines.append(f"Manifests: {_NOT_RENDERED}")
    elif not plan.files:
        lines.append("Manifests: identical to main")
    else:
        lines.append(f"Manifests: {len(plan.files)} files differ from main")
        lines += [f"  {status:<8} {path}" for path, status in plan.files]
        lines += ["", plan.diff.rstrip("\n")]
    lines += ["", _policy_line(plan), *(f"  {finding}" for finding in plan.policy)]
    lines += ["", f"Plan hash: {plan.plan_hash}", "", _verdict(plan)]
    return "\n".join(lines) + "\n"


def to_markdown(plan: ClusterPlan, limit: int = pr_body.MAX_BODY) -> str:
    """For a pull request comment: tables, the diff folded, the whole within GitHub's size limit."""
    # The hash first, so that a comment cut short for its size still carries it.
    lines = [f"## Plan: {_heading(plan.cluster)}", HASH_MARKER.format(name=plan.cluster.name, plan_hash=plan.plan_hash)]
    lines += ["", f"**{_verdict(plan)}**", "", f"Plan hash: `{plan.plan_hash}`", "", "### Network (Terraform)", ""]
    lines += [f"{_counts(plan.network)}.", ""]
    if plan.network.resources:
        lines += ["| Resource | Action |", "|---|---|"]
        lines += [f"| `{address}` | {action} |" for address, action in plan.network.resources]
        lines.append("")
    if plan.network.replaces_network:
        lines += [f"> **Warning:** {_refusal(plan.network)}", ""]
    lines += ["### Manifests", ""]
    if plan.files is None:
        lines.append(f"Manifests are {_NOT_RENDERED}.")
    elif not plan.files:
        lines.append("Identical to main.")
    else:
        lines += ["| File | Change |", "|---|---|", *(f"| `{p}` | {s} |" for p, s in plan.files)]
    lines += ["", "### Policy", "", _policy_line(plan), *(f"- {finding}" for finding in plan.policy)]
    head = "\n".join(lines) + "\n"
    return head + _diff_block(plan.diff, limit - len(head))


def _policy_line(plan: ClusterPlan) -> str:
    if plan.policy:
        return f"Policy: {len(plan.policy)} findings; new-cluster would refuse them:"
    return f"Policy: every rule that applies holds ({len(policy.RULES)} rules; `verify --explain` lists them)."


def _heading(cluster: ClusterSpec) -> str:
    return f"cluster {cluster.name} ({cluster.region}, VPC {cluster.vpc_cidr})"


def _counts(planned: NetworkPlan) -> str:
    s = planned.summary
    return f"{s.add} to add, {s.change} to change, {s.destroy} to destroy"


def _refusal(planned: NetworkPlan) -> str:
    return (
        f"this replaces or destroys {', '.join(planned.replaces_network)} under a running cluster; "
        "new-cluster refuses it without --force"
    )


def _verdict(plan: ClusterPlan) -> str:
    return "Changes: new-cluster would apply and commit them." if plan.changed else "No changes."


def _diff_block(diff: str, room: int) -> str:
    if not diff:
        return ""
    opening = f"\n<details><summary>Diff against main</summary>\n\n{_FENCE}diff\n"
    closing = f"{_FENCE}\n</details>\n"
    budget = room - len(opening) - len(closing)
    if len(diff) > budget:
        diff = diff[: max(budget - len(_TRUNCATED), 0)].rsplit("\n", 1)[0] + _TRUNCATED
    return opening + diff + closing
