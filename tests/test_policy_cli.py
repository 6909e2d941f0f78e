"""The policy at the command line: what it refuses is one line, exit 2 from new-cluster before anything is written,
exit 1 from verify; `verify --explain` lists the rules."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from pipeline import policy
from pipeline.config import Settings
from pipeline.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from pipeline.signing import Signer
from tests.fixtures import fleet_refs, push_by_hand
from tests.test_cli import observed, run_cli


def env_of(settings: Settings, endpoint: str | None = None) -> dict[str, str]:
    env = {"PIPELINE_STATE_DIR": str(settings.state_dir), "PIPELINE_FLEET": settings.fleet}
    return env if endpoint is None else {**env, "PIPELINE_AWS_ENDPOINT": endpoint}


def exception(expires: datetime.date, without: str = "") -> str:
    entry = {"rule": "api.ingress-limited", "cluster": "demo", "reason": "partner load tests", "expires": expires}
    lines = [f"    {key}: {value}" for key, value in entry.items() if key != without]
    return "exceptions:\n  - " + "\n".join(lines).lstrip() + "\n"


def on_main(settings: Settings, signer: Signer, tmp_path: Path, text: str) -> None:
    push_by_hand(settings.fleet, tmp_path / "work", "main", {"policy-exceptions.yaml": text}, signer)


@pytest.mark.reliability("bad input", "new-cluster with apiServer.allowedCIDRs that open the API to everyone")
def test_an_open_api_without_allow_open_access_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, record_property):
    (tmp_path / "demo.yaml").write_text("name: demo\napiServer:\n  allowedCIDRs: [0.0.0.0/1, 128.0.0.0/1]\n")

    result = run_cli(tmp_path, "new-cluster", "demo", "--spec", "demo.yaml")
    record_property("outcome", observed(result))

    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [
        "error: spec field 'apiServer.allowedCIDRs': together these blocks open the Kubernetes "
        "API to the whole internet; list your own CIDRs, or set apiServer.allowOpenAccess: true to accept that"
    ]
    assert not (tmp_path / "fleet.git").exists()
    assert not (tmp_path / ".pipeline" / "terraform").exists()


MISSING = {
    "reason": "policy-exceptions.yaml exceptions[0].reason: missing; say why the rule does not apply",
    "expires": "policy-exceptions.yaml exceptions[0].expires: missing or not a date; give the day it ends",
}


@pytest.mark.parametrize("missing", sorted(MISSING))
def test_an_exception_without_a_reason_or_an_expiry_stops_new_cluster_before_terraform(
    tmp_path: Path, settings: Settings, fleet_signer: Signer, moto_endpoint: str, missing: str
):
    line = MISSING[missing]
    on_main(settings, fleet_signer, tmp_path, exception(datetime.date(2099, 1, 1), without=missing))
    before = fleet_refs(settings.fleet)

    result = run_cli(tmp_path, "new-cluster", "demo", env=env_of(settings, moto_endpoint))

    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    [error] = result.stderr.strip().splitlines()
    assert error.startswith(f"error: {line}")
    assert fleet_refs(settings.fleet) == before
    assert not (settings.state_dir / "terraform" / "demo").exists()

    verified = run_cli(tmp_path, "verify", env=env_of(settings))
    assert verified.returncode == EXIT_FAILED
    assert line in verified.stdout


def test_an_expired_exception_stops_new_cluster_and_fails_verify(
    tmp_path: Path, settings: Settings, fleet_signer: Signer, moto_endpoint: str
):
    on_main(settings, fleet_signer, tmp_path, exception(datetime.date(2020, 1, 31)))
    before = fleet_refs(settings.fleet)
    expected = (
        "policy-exceptions.yaml exceptions[0] (api.ingress-limited for demo): expired on 2020-01-31; "
        "renew it with a later expiry, or remove it"
    )

    result = run_cli(tmp_path, "new-cluster", "demo", env=env_of(settings, moto_endpoint))

    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [f"error: {expected}"]
    assert fleet_refs(settings.fleet) == before
    assert not (settings.state_dir / "terraform" / "demo").exists()

    verified = run_cli(tmp_path, "verify", env=env_of(settings))
    assert verified.returncode == EXIT_FAILED
    assert verified.stdout.splitlines()[0] == expected


def test_verify_explain_lists_every_rule_with_its_control(tmp_path: Path):
    result = run_cli(tmp_path, "verify", "--explain")

    assert result.returncode == EXIT_OK
    assert result.stdout.splitlines() == policy.explain()
    assert any(line.startswith("controlplane.audit-log-shipped  AU-9") for line in result.stdout.splitlines())
