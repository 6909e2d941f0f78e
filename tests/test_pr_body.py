from __future__ import annotations

import datetime
from pathlib import Path

from pipeline import policy, policy_exceptions, pr_body
from pipeline.model import Manifest, Manifests, NetworkResult, PlanSummary
from pipeline.render import render
from tests.fixtures_render import ALL_HOLD, MANAGEMENT_CIDRS, sample_outputs, sample_spec

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def network(add: int = 22) -> NetworkResult:
    return NetworkResult(sample_outputs(), PlanSummary(add=add, change=0, destroy=0), state_serial=1)


# What the head commit's trailers say of the run that made it.
HEAD_TRAILERS = {
    **pr_body.run_trailers("20261123T120000Z-abc123", None),
    pr_body.CHANGES_TRAILER: pr_body.network_changes(network()),
    pr_body.SERIAL_TRAILER: "1",
}
PROVENANCE = pr_body.Provenance.of_commit("ABCDEF0123456789", HEAD_TRAILERS)


def test_a_new_cluster_body_tells_the_reviewer_everything_they_decide_on():
    cluster = sample_spec()
    manifests = render(cluster, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    text = pr_body.body(cluster, network(), {}, manifests, PROVENANCE, judged=ALL_HOLD)

    outputs = sample_outputs()
    assert f"## Cluster `{cluster.name}`" in text
    assert f"| Region | {cluster.region} |" in text
    assert f"| Kubernetes | {cluster.kubernetes_version} |" in text
    assert f"| Control plane | {cluster.control_plane.replicas} x {cluster.control_plane.instance_type} |" in text
    for pool in cluster.workers:
        assert f"`{pool.name}`: {pool.replicas} x {pool.instance_type}" in text
    assert f"VPC `{outputs.vpc_id}` `{outputs.vpc_cidr}`" in text
    for subnet in outputs.subnets:
        assert f"`{subnet.id}` {subnet.cidr}" in text
    for service, vpce in outputs.endpoint_ids:
        assert f"`{service}` (`{vpce}`)" in text
    assert "22 to add, 0 to change, 0 to destroy" in text
    for manifest in manifests.files:
        assert f"| `{manifest.path}` | added |" in text
    assert "ABCDEF0123456789" in text and "20261123T120000Z-abc123" in text
    assert "Workflow run" not in text


def test_the_diff_shows_only_what_changed_against_main():
    manifests = Manifests("demo", (Manifest("clusters/demo/a.yaml", "x: 2\n"), Manifest("clusters/demo/b.yaml", "b\n")))
    on_main = {"clusters/demo/a.yaml": "x: 1\n", "clusters/demo/b.yaml": "b\n", "clusters/demo/old.yaml": "o\n"}
    statuses, diff = pr_body.manifest_diff(on_main, manifests)
    assert statuses == (("clusters/demo/a.yaml", "changed"), ("clusters/demo/old.yaml", "removed"))
    assert "-x: 1\n+x: 2\n" in diff
    assert "--- a/clusters/demo/old.yaml\n+++ /dev/null\n" in diff
    assert "b.yaml" not in diff


def test_the_body_is_deterministic_and_fits_githubs_limit():
    cluster = sample_spec()
    big = Manifests("demo", (Manifest("clusters/demo/big.yaml", "".join(f"line{i}: {i}\n" for i in range(20000))),))
    first = pr_body.body(cluster, network(), {}, big, PROVENANCE, judged=ALL_HOLD)
    assert first == pr_body.body(cluster, network(), {}, big, PROVENANCE, judged=ALL_HOLD)
    assert len(first) <= pr_body.MAX_BODY
    assert "diff truncated" in first
    assert first.rstrip().endswith("`20261123T120000Z-abc123`")


def test_in_actions_the_body_links_the_workflow_run():
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/infra",
        "GITHUB_RUN_ID": "42",
    }
    url = pr_body.workflow_run_url(env)
    assert url == "https://github.com/acme/infra/actions/runs/42"
    assert pr_body.workflow_run_url({**env, "GITHUB_ACTIONS": "false"}) is None
    text = pr_body.body(
        sample_spec(), network(), {}, Manifests("demo", ()), pr_body.Provenance("F", "r", url), judged=ALL_HOLD
    )
    assert f"- Workflow run: {url}" in text


def test_the_body_shows_the_policy_result_and_each_reviewed_exception():
    exception = policy_exceptions.PolicyException(
        "api.ingress-limited", "demo", "partner load tests", datetime.date(2027, 1, 31), 0
    )
    finding = policy.Finding(policy.BY_ID["api.ingress-limited"], "demo", "open to everyone")
    judged = policy_exceptions.Judged((), ((finding, exception),))
    manifests = render(sample_spec(), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)

    text = pr_body.body(sample_spec(), network(), {}, manifests, PROVENANCE, judged=judged)

    held = len(policy.RULES) - 1
    assert f"{held} of {len(policy.RULES)} rules hold; `verify --explain` lists them." in text
    assert "| `api.ingress-limited` | SC-7 | partner load tests | 2027-01-31 |" in text
    everything = pr_body.body(sample_spec(), network(), {}, manifests, PROVENANCE, judged=ALL_HOLD)
    assert f"{len(policy.RULES)} of {len(policy.RULES)} rules hold" in everything


def test_a_later_run_that_reads_the_same_head_writes_the_same_text():
    """The body describes the head commit: a run that committed nothing (Terraform changed nothing, or
    mended drift) leaves the text of the run that made the head, which that head's trailers record."""
    cluster = sample_spec()
    manifests = render(cluster, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    made = pr_body.body(cluster, network(), {}, manifests, PROVENANCE, judged=ALL_HOLD)
    rerun = pr_body.body(cluster, network(add=0), {}, manifests, PROVENANCE, judged=ALL_HOLD)
    assert rerun == made
    assert "- Terraform: 22 to add, 0 to change, 0 to destroy when the head was committed (state serial 1)" in made


def test_a_head_made_before_its_changes_were_recorded_says_so():
    old = pr_body.Provenance.of_commit("ABCDEF0123456789", {pr_body.RUN_TRAILER: "run-0"})
    cluster = sample_spec()
    manifests = render(cluster, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    text = pr_body.body(cluster, network(), {}, manifests, old, judged=ALL_HOLD)
    assert "- Terraform: no record of the run's changes on the head commit" in text
    assert "Pipeline run `run-0`" in text
