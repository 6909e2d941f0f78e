from __future__ import annotations

import pytest

from pipeline import pr_body, render, upgrades
from pipeline.errors import SpecError
from pipeline.model import NetworkResult, PlanSummary
from tests.fixtures_render import ALL_HOLD, MANAGEMENT_CIDRS, sample_outputs, sample_spec
from tests.test_render import TEMPLATES


def _on_main(version: str) -> dict[str, str]:
    manifests = render.render(sample_spec(kubernetes_version=version), sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    return {m.path: m.content for m in manifests.files}


def test_one_minor_up_or_a_patch_is_the_move_cluster_api_makes():
    on_main = _on_main("v1.31.2")
    assert upgrades.version_on_main(on_main) == "v1.31.2"
    assert upgrades.check(sample_spec(kubernetes_version="v1.32.0"), on_main) == "v1.31.2"
    assert upgrades.check(sample_spec(kubernetes_version="v1.31.9"), on_main) == "v1.31.2"
    assert upgrades.check(sample_spec(), {}) is None


@pytest.mark.reliability("bad input", "kubernetesVersion v1.33.1 for a cluster at v1.31.2 on main")
def test_a_skipped_minor_is_refused_with_the_way_there(record_property):
    with pytest.raises(SpecError) as caught:
        upgrades.check(sample_spec(kubernetes_version="v1.33.1"), _on_main("v1.31.2"))
    record_property("outcome", f"SpecError (exit {caught.value.exit_code}): {caught.value}")

    assert caught.value.field == "kubernetesVersion"
    assert "skips minors from v1.31.2 on main" in caught.value.problem
    assert caught.value.fix == "upgrade to v1.32.x then v1.33.x, merging each"


def test_a_downgrade_is_refused():
    with pytest.raises(SpecError) as caught:
        upgrades.check(sample_spec(kubernetes_version="v1.30.4"), _on_main("v1.31.2"))
    assert "Cluster API does not downgrade" in str(caught.value)


def test_the_pull_request_shows_the_upgrade_and_the_ccm_that_moves_with_it():
    spec = sample_spec(kubernetes_version="v1.32.0")
    manifests = render.render(spec, sample_outputs(), TEMPLATES, MANAGEMENT_CIDRS)
    network = NetworkResult(sample_outputs(), PlanSummary(0, 0, 0), 3)
    provenance = pr_body.Provenance("F" * 40, "run-1", None)

    text = pr_body.body(spec, network, _on_main("v1.31.2"), manifests, provenance, judged=ALL_HOLD)

    assert "## Upgrade" in text
    assert "Kubernetes v1.31.2 → v1.32.0" in text and "cloud-controller-manager moves to v1.32.5" in text
    assert "## Upgrade" not in pr_body.body(spec, network, _on_main("v1.32.0"), manifests, provenance, judged=ALL_HOLD)
