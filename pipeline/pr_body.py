"""The pull request a reviewer decides from: the cluster, the network Terraform made, the manifest diff."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline import policy
from pipeline.addons import ccm_image
from pipeline.model import Manifests, NetworkOutputs, NetworkResult
from pipeline.policy_exceptions import Judged
from pipeline.spec import ClusterSpec
from pipeline.upgrades import version_on_main

# GitHub refuses bodies over 65,536 characters; the diff gives way first.
MAX_BODY = 65_000
_TRUNCATED = "\n… diff truncated; see the branch for the full change\n"


# The head commit's trailers that the pull request reads its provenance from: the text describes the
# commit under review, whichever run last touched the pull request.
RUN_TRAILER = "Pipeline-Run"
WORKFLOW_TRAILER = "Workflow-Run"
CHANGES_TRAILER = "Network-Changes"
SERIAL_TRAILER = "State-Serial"


@dataclass(frozen=True)
class Provenance:
    signer: str  # fingerprint of the key that signed the head
    run_id: str
    run_url: str | None  # the workflow run, when in GitHub Actions
    network_changes: str | None = None  # what Terraform changed in the run that made the head
    state_serial: str | None = None  # the network state's serial that run left

    @classmethod
    def of_commit(cls, signer: str, trailers: Mapping[str, str]) -> Provenance:
        """The provenance a head commit records in its trailers, signed by `signer`."""
        return cls(
            signer,
            trailers.get(RUN_TRAILER, "unknown"),
            trailers.get(WORKFLOW_TRAILER),
            trailers.get(CHANGES_TRAILER),
            trailers.get(SERIAL_TRAILER),
        )


def run_trailers(run_id: str, run_url: str | None) -> dict[str, str]:
    """The trailers naming the run that makes a commit, read back by `Provenance.of_commit`."""
    return {RUN_TRAILER: run_id, **({} if run_url is None else {WORKFLOW_TRAILER: run_url})}


def workflow_run_url(env: Mapping[str, str]) -> str | None:
    """The Actions run that made the change, from the variables GitHub Actions sets."""
    needed = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if env.get("GITHUB_ACTIONS") != "true" or not all(env.get(name) for name in needed):
        return None
    return f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"


def manifest_diff(on_main: Mapping[str, str], manifests: Manifests) -> tuple[tuple[tuple[str, str], ...], str]:
    """Per-file status against main and one unified diff, files in path order."""
    after = {m.path: m.content for m in manifests.files}
    statuses: list[tuple[str, str]] = []
    chunks: list[str] = []
    for path in sorted(set(on_main) | set(after)):
        old, new = on_main.get(path), after.get(path)
        if old == new:
            continue
        statuses.append((path, "added" if old is None else "removed" if new is None else "changed"))
        chunks.extend(
            difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                (new or "").splitlines(keepends=True),
                fromfile=f"a/{path}" if old is not None else "/dev/null",
                tofile=f"b/{path}" if new is not None else "/dev/null",
            )
        )
    return tuple(statuses), "".join(chunks)


def title(cluster: ClusterSpec, new: bool) -> str:
    verb = "Create" if new else "Update"
    return f"{verb} cluster {cluster.name} ({cluster.region}, Kubernetes {cluster.kubernetes_version})"


def body(
    cluster: ClusterSpec,
    network: NetworkResult,
    on_main: Mapping[str, str],
    manifests: Manifests,
    provenance: Provenance,
    *,
    judged: Judged,
) -> str:
    statuses, diff = manifest_diff(on_main, manifests)
    upgrade = _upgrade(cluster, version_on_main(on_main))
    sections = [
        *_cluster(cluster),
        *upgrade,
        *_network(cluster, network, provenance),
        *_policy(judged),
        *_files(statuses),
        "",
    ]
    head = "\n".join(sections)
    tail = "\n".join(["", *_provenance(provenance), ""])
    return head + _diff_block(diff, MAX_BODY - len(head) - len(tail)) + tail


def _policy(judged: Judged) -> list[str]:
    """The security baseline's result: every rule holds, or holds but for reviewed exceptions."""
    excepted = {finding.rule.id: exception for finding, exception in judged.excepted}
    held = len(policy.RULES) - len(excepted)
    lines = ["### Policy", "", f"{held} of {len(policy.RULES)} rules hold; `verify --explain` lists them."]
    if excepted:
        lines += ["", "| Rule | Control | Excepted because | Until |", "|---|---|---|---|"]
        for rule_id, exception in sorted(excepted.items()):
            rule = policy.BY_ID[rule_id]
            lines.append(f"| `{rule.id}` | {rule.control} | {exception.reason} | {exception.expires.isoformat()} |")
    return [*lines, ""]


def _cluster(cluster: ClusterSpec) -> list[str]:
    pools = ", ".join(f"`{p.name}`: {p.replicas} x {p.instance_type}" for p in cluster.workers) or "none"
    cp = cluster.control_plane
    return [
        f"## Cluster `{cluster.name}`",
        "",
        "| | |",
        "|---|---|",
        f"| Region | {cluster.region} |",
        f"| Kubernetes | {cluster.kubernetes_version} |",
        f"| Control plane | {cp.replicas} x {cp.instance_type} |",
        f"| Worker pools | {pools} |",
        "",
    ]


def _upgrade(cluster: ClusterSpec, current: str | None) -> list[str]:
    if current is None or current == cluster.kubernetes_version:
        return []
    return [
        "## Upgrade",
        "",
        f"Kubernetes {current} → {cluster.kubernetes_version}: new machine templates roll the control plane, "
        f"then each pool; the cloud-controller-manager moves to {ccm_image(cluster.kubernetes_version)} with it.",
        "",
    ]


def _network(cluster: ClusterSpec, network: NetworkResult, provenance: Provenance) -> list[str]:
    out = network.outputs
    zones = sorted({s.zone for s in out.subnets})
    lines = [
        "## Network (Terraform)",
        "",
        f"VPC `{out.vpc_id}` `{out.vpc_cidr}` in {len(zones)} zones; "
        f"NAT: {cluster.network.nat_gateways} ({', '.join(f'`{n}`' for n in out.nat_gateway_ids) or 'none'}).",
        "",
        *subnet_table(out),
    ]
    endpoints = ", ".join(f"`{service}` (`{vpce}`)" for service, vpce in out.endpoint_ids) or "none"
    if out.bastion is None:
        bastion = "none"
    else:
        allowed = ", ".join(cluster.bastion.allowed_cidrs) or "nobody (no SSH rule)"
        bastion = f"`{out.bastion.instance_id}` at {out.bastion.public_ip}, SSH from {allowed}"
    lines += [
        "",
        f"- VPC endpoints: {endpoints}",
        f"- Bastion: {bastion}",
        f"- Terraform: {_terraform(provenance)}",
        "",
    ]
    return lines


def _terraform(provenance: Provenance) -> str:
    """What the run that made the head applied; a later run that commits nothing does not rewrite it."""
    serial = "" if provenance.state_serial is None else f"state serial {provenance.state_serial}"
    if provenance.network_changes is None:
        return serial or "no record of the run's changes on the head commit"
    return f"{provenance.network_changes} when the head was committed" + (f" ({serial})" if serial else "")


def network_changes(network: NetworkResult) -> str:
    """Terraform's changes of a run, as the head commit's trailer records them."""
    changes = network.changes
    return f"{changes.add} to add, {changes.change} to change, {changes.destroy} to destroy"


def subnet_table(outputs: NetworkOutputs) -> list[str]:
    """A Markdown table of the subnets, a row per zone."""
    by_zone = {(s.zone, s.public): f"`{s.id}` {s.cidr}" for s in outputs.subnets}
    rows = [
        f"| {zone} | {by_zone.get((zone, True), '—')} | {by_zone.get((zone, False), '—')} |"
        for zone in sorted({s.zone for s in outputs.subnets})
    ]
    return ["| Zone | Public subnet | Private subnet |", "|---|---|---|", *rows]


def _files(statuses: tuple[tuple[str, str], ...]) -> list[str]:
    if not statuses:
        return ["## Manifests", "", "Identical to main.", ""]
    return ["## Manifests", "", "| File | Change |", "|---|---|", *(f"| `{p}` | {s} |" for p, s in statuses), ""]


def _diff_block(diff: str, room: int) -> str:
    if not diff:
        return ""
    fence = "````"  # longer than any backtick run a YAML file is likely to hold
    frame = f"<details><summary>Diff against main</summary>\n\n{fence}diff\n\n{fence}\n</details>\n"
    budget = room - len(frame)
    if len(diff) > budget:
        diff = diff[: max(budget - len(_TRUNCATED), 0)].rsplit("\n", 1)[0] + _TRUNCATED
    return f"<details><summary>Diff against main</summary>\n\n{fence}diff\n{diff}{fence}\n</details>\n"


def _provenance(provenance: Provenance) -> list[str]:
    lines = [
        "## Provenance",
        "",
        f"- Signed by OpenPGP key `{provenance.signer}` (Flux applies only commits signed by the fleet's keys)",
        f"- Pipeline run `{provenance.run_id}`",
    ]
    if provenance.run_url:
        lines.append(f"- Workflow run: {provenance.run_url}")
    return lines
