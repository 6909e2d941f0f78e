from __future__ import annotations

import dataclasses
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import aws, config, local_endpoint, network, redact, state_lock, terraform
from pipeline.errors import StateLocked, TerraformError

# Verbatim from terraform 1.11 with an S3 backend whose lock file another run holds.
LOCK_OUTPUT = """
Error: Error acquiring the state lock

Error message: operation error S3: PutObject, https response error
StatusCode: 412, RequestID: 21O8Z6MI44hNKQnmgZ9ivOfxKKWQbUqwz2hlmiwrkzf4hRcwf6pV,
api error PreconditionFailed: At least one of the pre-conditions you
specified did not hold
Lock Info:
  ID:        11111111-2222-3333-4444-555555555555
  Path:      tfstate-x/clusters/manual/network.tfstate
  Operation: OperationTypeApply
  Who:       someone@host
  Version:   1.11.4
  Created:   2025-01-01 00:00:00 +0000 UTC
  Info:


Terraform acquires a state lock to protect the state from being written
by multiple users at the same time. Please resolve the issue above and try
again.
"""


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> config.Settings:
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config.load_settings(os.environ, tmp_path)


def test_cli_config_uses_the_configured_mirror_and_creates_the_cache(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, PIPELINE_PROVIDER_MIRROR=str(tmp_path / "mirror"))
    cache = tmp_path / "cache"
    settings = dataclasses.replace(settings, plugin_cache=cache)

    text = terraform.write_cli_config(settings).read_text()

    assert f'path = "{tmp_path / "mirror"}"' in text
    assert "filesystem_mirror" in text
    assert f'plugin_cache_dir = "{cache}"' in text
    assert cache.is_dir()


def test_cli_config_without_a_mirror_installs_from_the_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(terraform, "MIRROR_CANDIDATES", (tmp_path / "nowhere",))
    settings = _settings(tmp_path, monkeypatch)

    text = terraform.write_cli_config(settings).read_text()

    assert "provider_installation" not in text
    assert text.startswith("plugin_cache_dir = ")


def test_a_mirror_counts_only_if_it_holds_the_aws_provider(tmp_path, monkeypatch):
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    (full / "registry.terraform.io" / "hashicorp" / "aws").mkdir(parents=True)
    monkeypatch.setattr(terraform, "MIRROR_CANDIDATES", (empty, full))

    assert terraform.find_mirror(_settings(tmp_path, monkeypatch)) == full


@pytest.mark.reliability(
    "fault", "terraform plan finds the S3 state lock held by another run (terraform 1.11's output)"
)
def test_a_held_lock_names_the_command_that_releases_it(tmp_path, monkeypatch, record_property):
    ws = terraform.workspace(_settings(tmp_path, monkeypatch), "demo", "cluster")

    error = terraform.failure(["terraform", "plan", "-input=false"], LOCK_OUTPUT, ws)
    record_property("outcome", f"{type(error).__name__} (exit {error.exit_code}): {error}")

    assert isinstance(error, StateLocked)
    message = str(error)
    assert message.startswith(
        "terraform plan: the Terraform state of cluster 'demo' is locked "
        "(lock 11111111-2222-3333-4444-555555555555, taken by someone@host for apply "
    )
    # Older than the bound: its run is taken for dead, and the command needs no --force.
    assert message.endswith(
        "; if no run is in progress, release it with: "
        "python -m pipeline unlock demo --lock 11111111-2222-3333-4444-555555555555"
    )
    assert "\n" not in message


def test_a_young_lock_is_named_with_the_force_it_needs_and_the_flags_that_find_it(tmp_path, monkeypatch):
    settings = _settings(tmp_path, monkeypatch, PIPELINE_TARGET="aws")
    scope = state_lock.Scope("demo", settings.target, "eu-west-1")
    ws = terraform.workspace(settings, "demo", "cluster", unlock=scope)
    now = datetime.now(UTC) - timedelta(seconds=40)
    young = LOCK_OUTPUT.replace("2025-01-01 00:00:00 +0000 UTC", f"{now:%Y-%m-%d %H:%M:%S}.123456789 +0000 UTC")

    message = str(terraform.failure(["terraform", "apply", "-input=false"], young, ws))

    # Taken 40 s before now, less the second's fraction the lock time drops: 39 to 41 s by when it is read.
    assert re.search(r"taken by someone@host for apply (39|4[01]) s ago\)", message), message
    assert message.endswith(
        "; if the run that took it is dead, release it with: python -m pipeline unlock demo --target aws "
        "--region eu-west-1 --lock 11111111-2222-3333-4444-555555555555 --force"
    )


@pytest.mark.reliability("fault", "terraform init on a configuration with an unclosed block")
def test_a_real_terraform_failure_is_one_line_with_its_errors(tmp_path, monkeypatch, record_property):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "main.tf").write_text('resource "x" {\n')
    ws = terraform.workspace(_settings(tmp_path, monkeypatch), "demo", "cluster")
    ws = terraform.Workspace(broken, ws.work_dir, ws.env)

    with pytest.raises(TerraformError) as caught:
        terraform.init(ws, {})

    message = str(caught.value)
    record_property("outcome", f"{type(caught.value).__name__} (exit {caught.value.exit_code}): {message}")
    assert message.startswith("terraform init failed: ")
    assert 'Unclosed configuration block (on main.tf line 1, in resource "x")' in message
    assert "\n" not in message
    assert not (broken / ".terraform").exists()


def test_plan_summary_counts_a_replacement_as_add_and_destroy():
    plan = {
        "resource_changes": [
            {"change": {"actions": ["create"]}},
            {"change": {"actions": ["update"]}},
            {"change": {"actions": ["delete", "create"]}},
            {"change": {"actions": ["no-op"]}},
        ]
    }

    summary = terraform.summary_of(plan)

    assert (summary.add, summary.change, summary.destroy) == (2, 1, 1)


def test_resource_changes_name_each_action_and_what_forces_a_replacement():
    vpc = {
        "address": "module.network.aws_vpc.this",
        "type": "aws_vpc",
        "mode": "managed",
        "change": {
            "actions": ["delete", "create"],
            "before": {"cidr_block": "10.20.0.0/16", "id": "vpc-1"},
            "after": {"cidr_block": "10.30.0.0/16"},
            "after_unknown": {"id": True},
            "replace_paths": [["cidr_block"]],
        },
    }
    plan = {
        "resource_changes": [
            vpc,
            {"address": "b", "type": "t", "mode": "managed", "change": {"actions": ["create"]}},
            {"address": "a", "type": "t", "mode": "managed", "change": {"actions": ["update"]}},
            {"address": "c", "type": "t", "mode": "managed", "change": {"actions": ["delete"]}},
            {"address": "d", "type": "t", "mode": "managed", "change": {"actions": ["no-op"]}},
            {"address": "data.x", "type": "t", "mode": "data", "change": {"actions": ["read"]}},
        ]
    }

    changes = terraform.resource_changes(plan)

    assert [(c.address, c.action) for c in changes] == [
        ("a", "change"),
        ("b", "add"),
        ("c", "destroy"),
        ("module.network.aws_vpc.this", "replace"),
    ]
    assert changes[-1].replaced_by == (("cidr_block", "10.20.0.0/16", "10.30.0.0/16"),)
    assert not changes[-1].tainted


def _vpc_change(cidr: str, hidden: str = "first") -> dict[str, object]:
    return {
        "address": "module.network.aws_vpc.this",
        "type": "aws_vpc",
        "mode": "managed",
        "change": {
            "actions": ["create"],
            "after": {"cidr_block": cidr, "tags": {"a": "1"}, "secret": {"value": hidden}},
            "after_unknown": {"id": True},
            "after_sensitive": {"secret": {"value": True}},
        },
    }


def test_the_changes_digest_is_what_would_be_applied_and_nothing_else():
    unchanged = {"address": "module.network.aws_subnet.a", "change": {"actions": ["no-op"], "after": {"id": "s-1"}}}
    read = {"address": "data.aws_region.this", "mode": "data", "change": {"actions": ["read"], "after": {"x": "1"}}}
    plan = {
        "format_version": "1.2",
        "terraform_version": "1.11.4",
        "timestamp": "2026-12-03T06:00:00Z",
        "variables": {"aws_endpoint": {"value": "https://127.0.0.1:40001"}},
        "resource_changes": [_vpc_change("10.20.0.0/16"), unchanged],
        "output_changes": {"vpc_id": {"actions": ["create"]}, "region": {"actions": ["no-op"]}},
    }
    digest = terraform.changes_digest(plan)

    # Another run, another session's endpoint, the entries in another order, a no-op or a read more or less.
    again = plan | {
        "timestamp": "2026-12-04T07:00:00Z",
        "variables": {"aws_endpoint": {"value": "https://127.0.0.1:40999"}},
        "resource_changes": [read, _vpc_change("10.20.0.0/16")],
    }
    assert terraform.changes_digest(again) == digest
    # A value the apply would set, an action, or an output the apply would change: another digest.
    assert terraform.changes_digest(plan | {"resource_changes": [_vpc_change("10.30.0.0/16")]}) != digest
    assert terraform.changes_digest(plan | {"output_changes": {}}) != digest
    assert terraform.changes_digest({}) != digest
    # A sensitive value counts as set, not as itself: the digest is posted where anyone can read it.
    assert terraform.changes_digest(plan | {"resource_changes": [_vpc_change("10.20.0.0/16", "second")]}) == digest


def test_a_subnet_left_tainted_by_a_stopped_apply_is_replaced_without_force():
    subnet = {
        "address": 'module.network.aws_subnet.private["us-east-1a"]',
        "type": "aws_subnet",
        "mode": "managed",
        "action_reason": "replace_because_tainted",
        "change": {"actions": ["delete", "create"], "before": {"id": "subnet-1"}, "after": {}},
    }

    (change,) = terraform.resource_changes({"resource_changes": [subnet]})

    assert (change.action, change.tainted) == ("replace", True)
    assert network._network_losses((change,)) == ()


PLANTED = "planted-sensitive-value-7f3a9c"


@pytest.mark.reliability("secret", "a Terraform stack marks an output sensitive")
def test_a_sensitive_output_never_leaves_terraform(tmp_path, monkeypatch, record_property):
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "main.tf").write_text(
        f'terraform {{\n  backend "local" {{\n    path = "{tmp_path / "state.tfstate"}"\n  }}\n}}\n'
        'variable "secret" {\n  type      = string\n  sensitive = true\n}\n'
        'output "vpc_id" {\n  value = "vpc-0abc"\n}\n'
        'output "bastion_private_key" {\n  value     = var.secret\n  sensitive = true\n}\n'
    )
    ws = terraform.workspace(_settings(tmp_path, monkeypatch), "demo", "cluster")
    ws = terraform.Workspace(stack, ws.work_dir, ws.env, ws.plugin_cache)
    var_file = ws.work_dir / "vars.json"
    var_file.write_text(f'{{"secret": "{PLANTED}"}}')
    lines: list[str] = []

    terraform.init(ws, {}, lines.append)
    terraform.apply(ws, terraform.plan(ws, var_file, lines.append), lines.append)
    outputs = terraform.outputs(ws)

    assert outputs.values == {"vpc_id": "vpc-0abc"}
    assert outputs.sensitive == {"bastion_private_key"}
    assert any("bastion_private_key = <sensitive>" in line for line in lines)
    assert not any(PLANTED in line for line in lines)
    assert redact.redact(f"leaked {PLANTED}") == "leaked ***"
    record_property(
        "outcome",
        f"outputs read: {sorted(outputs.values)}, sensitive names only: {sorted(outputs.sensitive)}; "
        f"value absent from {len(lines)} Terraform lines, masked if printed",
    )


def test_a_sensitive_output_the_manifests_are_made_from_is_refused():
    values = {"region": "us-east-1", "vpc_id": "vpc-1", "vpc_cidr": "10.0.0.0/16"}
    with pytest.raises(TerraformError, match=r"marks output subnets sensitive.*never reaches the fleet repo"):
        network.network_outputs(terraform.Outputs(values, frozenset({"subnets"})))


@pytest.mark.parametrize(
    ("output", "error", "head"),
    [
        (
            "Error: operation error EC2: DescribeAvailabilityZones, exceeded maximum number of attempts, 5, "
            "https response error StatusCode: 503, RequestID: x, api error ServiceUnavailable: Service is unavailable",
            "AwsUnavailable",
            "terraform plan: EC2: DescribeAvailabilityZones failed after 5 attempts (ServiceUnavailable); ",
        ),
        (
            "Error: operation error EC2: CreateVpc, exceeded maximum number of attempts, 5, https response error "
            'StatusCode: 0, RequestID: , request send failed, Post "http://127.0.0.1:9/": dial tcp: connection refused',
            "AwsUnavailable",
            "terraform plan: EC2: CreateVpc failed after 5 attempts (no answer); check the network",
        ),
    ],
    ids=["5xx", "refused"],
)
def test_the_providers_spent_retries_are_one_line_naming_the_call(tmp_path, monkeypatch, output, error, head):
    """Verbatim from provider 5.100.0 against an endpoint that keeps failing; throttling is tested live."""
    ws = terraform.workspace(_settings(tmp_path, monkeypatch), "demo", "cluster")

    found = terraform.failure(["terraform", "plan"], output, ws)

    assert type(found).__name__ == error
    assert str(found).startswith(head)
    assert str(found).endswith("the next run continues from where this one stopped")


def test_init_runs_again_only_when_what_it_depends_on_changed(tmp_path, monkeypatch, moto_endpoint):
    settings = _settings(tmp_path, monkeypatch, PIPELINE_AWS_ENDPOINT=moto_endpoint)
    settings = dataclasses.replace(settings, plugin_cache=tmp_path / "cache")
    access = local_endpoint.ensure(settings, "us-east-1")
    ws = terraform.workspace(settings, "demo", "cluster", dict(access.env))
    aws.ensure_state_bucket(access, "init-bucket")
    backend = network.backend_config("init-bucket", network.state_key("demo"), access)

    def init(config: dict[str, str]) -> list[str]:
        lines: list[str] = []
        terraform.init(ws, config, lines.append)
        return lines

    assert any("Terraform has been successfully initialized" in line for line in init(backend))
    assert init(backend) == []  # the same backend, stack, lock file and CLI config: nothing to do
    assert init({**backend, "key": network.state_key("other")}) != []  # another state
    assert init({**backend, "key": network.state_key("other")}) == []
    shutil.rmtree(tmp_path / "cache")  # the providers its links point at are gone
    assert init({**backend, "key": network.state_key("other")}) != []
