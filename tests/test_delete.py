from __future__ import annotations

import dataclasses
import io
import uuid
from pathlib import Path

import pytest

from pipeline import config, delete, journal, render, signing
from pipeline.approve import approve_cluster
from pipeline.commands import delete_cluster
from pipeline.errors import BadInput, Blocked, RunInProgress
from pipeline.model import Manifest, Manifests
from pipeline.report import Reporter
from tests import fleet_calls
from tests.fixtures import fleet_git, fleet_refs
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec
from tests.fleet_calls import commit
from tests.github_fake import BOT, TOKEN, FakeGitHub
from tests.test_commit import TRAILERS
from tests.test_network import REGION

VPC = "vpc-0abc1234"


def rendered(settings: config.Settings, name: str = "demo", vpc_id: str = VPC) -> Manifests:
    return render.render(sample_spec(name), sample_outputs(vpc_id=vpc_id), settings.templates_dir, MANAGEMENT_CIDRS)


def on_main(settings: config.Settings, signer: signing.Signer, manifests: Manifests) -> None:
    commit(manifests, settings, signer, TRAILERS, "create")
    approve_cluster(manifests.cluster, settings, signer)


def delete_demo(
    settings: config.Settings, review_mode: str = "local", force: bool = False, name: str = "demo"
) -> tuple[int, str]:
    """delete-cluster as the CLI runs it; its exit code and what it printed and reported."""
    log = io.StringIO()
    code = delete_cluster.run(name, review_mode, force, settings, Reporter(log))
    return code, log.getvalue()


def tree(settings: config.Settings, ref: str) -> list[str]:
    return fleet_git(settings.fleet, "ls-tree", "-r", "--name-only", ref).split()


def rev(settings: config.Settings, ref: str) -> str:
    return fleet_git(settings.fleet, "rev-parse", ref).strip()


def has_branch(settings: config.Settings, branch: str) -> bool:
    return f"refs/heads/{branch} " in fleet_refs(settings.fleet)


@pytest.fixture
def moto_settings(settings: config.Settings, moto_endpoint: str) -> config.Settings:
    """The settings with the session's moto server as the local target's AWS and a bucket of their own."""
    return dataclasses.replace(settings, aws_endpoint=moto_endpoint, state_bucket=f"tfstate-{uuid.uuid4().hex[:12]}")


def test_first_run_puts_a_signed_removal_up_for_local_review(
    settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    on_main(settings, fleet_signer, rendered(settings))
    on_main(settings, fleet_signer, rendered(settings, "other", "vpc-0other"))
    main_before = rev(settings, "main")

    code, log = delete_demo(settings)

    assert code == 0
    out = capsys.readouterr().out
    assert "next: python -m pipeline approve demo\n" in out
    assert f"then: python -m pipeline delete-cluster demo destroys its network in {REGION}" in out
    assert "signed the removal" in log
    assert rev(settings, "main") == main_before
    assert fleet_git(settings.fleet, "rev-parse", "cluster/demo^").strip() == main_before
    removed = fleet_git(settings.fleet, "diff", "--name-status", "main", "cluster/demo").splitlines()
    assert {line.split("\t")[0] for line in removed} == {"D"}
    assert sorted(line.split("\t")[1] for line in removed) == sorted(m.path for m in rendered(settings).files)
    assert not [path for path in tree(settings, "cluster/demo") if "demo" in path]
    assert "clusters/other/cluster.yaml" in tree(settings, "cluster/demo")
    message = fleet_git(settings.fleet, "log", "-1", "--format=%B", "cluster/demo")
    assert message.startswith(f"cluster demo: delete (VPC {VPC} in {REGION})\n")
    assert f"Removes-Network: VPC {VPC} in {REGION}\n" in message
    assert "Pipeline-Run: " in message
    keys = fleet_calls.trusted_keys(settings)
    assert signing.verify_commit(Path(settings.fleet), "cluster/demo", keys) == fleet_signer.fingerprint
    # The network was left alone: not even the local endpoint was started to reach it.
    assert not (settings.state_dir / "local-endpoint.json").exists()
    assert journal.last_run(settings.journal_dir, "demo") is not None

    approval = approve_cluster("demo", settings, fleet_signer)

    assert approval.how == "fast-forward"
    assert [m.cluster for m in fleet_calls.cluster_manifests(settings)] == ["other"]


def test_a_removal_under_review_is_said_so_and_nothing_is_pushed(
    settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    on_main(settings, fleet_signer, rendered(settings))
    delete_demo(settings)
    head = rev(settings, "cluster/demo")
    refs = fleet_refs(settings.fleet)
    capsys.readouterr()

    code, log = delete_demo(settings)

    assert code == 0
    assert "already holds the removal" in log
    out = capsys.readouterr().out
    assert f"its removal is under review on cluster/demo at {head}" in out
    assert "next: python -m pipeline approve demo" in out
    assert fleet_refs(settings.fleet) == refs


def test_a_pending_update_is_replaced_by_the_removal(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    on_main(settings, fleet_signer, rendered(settings))
    extra = Manifest("clusters/demo/extra.yaml", "kind: ConfigMap\n")
    commit(Manifests("demo", (*rendered(settings).files, extra)), settings, fleet_signer, TRAILERS, "update")

    assert delete_demo(settings)[0] == 0

    assert not [path for path in tree(settings, "cluster/demo") if "demo" in path]
    assert approve_cluster("demo", settings, fleet_signer).how == "fast-forward"
    assert fleet_calls.cluster_manifests(settings) == ()


def test_the_network_is_never_destroyed_while_main_holds_the_cluster(
    settings: config.Settings, fleet_signer: signing.Signer
) -> None:
    on_main(settings, fleet_signer, rendered(settings))
    standing = delete.locate("demo", settings)
    refs = fleet_refs(settings.fleet)

    with pytest.raises(Blocked, match=r"still on main.*--force"):
        delete.tear_down(standing, settings, force=False)

    assert fleet_refs(settings.fleet) == refs
    assert standing.network == delete.Network(REGION, VPC, f"fleet commit {rev(settings, 'main')[:12]}")


def test_on_github_the_removal_is_a_pull_request_naming_the_vpc(
    settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    on_main(settings, fleet_signer, rendered(settings))

    def head_of(branch: str) -> str | None:
        return rev(settings, branch) if has_branch(settings, branch) else None

    with FakeGitHub(repos={"octo/fleet": (BOT,)}, resolve_head=head_of) as github:
        github_settings = dataclasses.replace(
            settings, github=config.GitHubSettings(github.url, "octo/fleet", TOKEN, (), ())
        )

        code, _ = delete_demo(github_settings, "github")

        assert code == 0
        [pull] = github.open_pulls("cluster/demo")
        assert pull.title == f"Delete cluster demo (VPC {VPC} in {REGION})"
        body = pull.body or ""
        assert "`clusters/demo/awscluster.yaml`" in body and "`flux/clusters/demo.yaml`" in body
        assert f"VPC {VPC} in {REGION}" in body and "delete-cluster demo` destroys it" in body
        assert f"Signed by OpenPGP key `{fleet_signer.fingerprint}`" in body
        record = journal.last_run(settings.journal_dir, "demo")
        assert record is not None
        assert f"Pipeline run `{record['run']}`" in body
        assert "then: python -m pipeline merge demo" in capsys.readouterr().out


def test_once_removed_the_branch_goes_and_a_cluster_gone_stays_gone(
    moto_settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = moto_settings
    on_main(settings, fleet_signer, rendered(settings))
    delete_demo(settings)
    approve_cluster("demo", settings, fleet_signer)
    capsys.readouterr()

    code, _ = delete_demo(settings)

    assert code == 0
    assert not has_branch(settings, "cluster/demo")
    out = capsys.readouterr().out
    assert "review branch cluster/demo deleted" in out
    assert f"no Terraform state for its network in {REGION}" in out
    refs = fleet_refs(settings.fleet)

    code, _ = delete_demo(settings)

    assert code == 0
    assert "cluster demo is already gone: not on main, no review branch, no network state" in capsys.readouterr().out
    assert fleet_refs(settings.fleet) == refs


def test_a_cluster_the_fleet_never_had_is_already_gone(
    settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = fleet_refs(settings.fleet)

    assert delete_demo(settings)[0] == 0

    assert "cluster demo is already gone" in capsys.readouterr().out
    assert fleet_refs(settings.fleet) == refs


def test_a_creation_never_approved_is_withdrawn_before_anything_else(
    moto_settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = moto_settings
    commit(rendered(settings), settings, fleet_signer, TRAILERS, "create")
    standing = delete.locate("demo", settings)
    assert (standing.on_main, standing.branch_merged) == ((), False)
    assert standing.network is not None and standing.network.vpc_id == VPC

    assert delete_demo(settings)[0] == 0

    assert not has_branch(settings, "cluster/demo")
    assert "review branch cluster/demo deleted" in capsys.readouterr().out


def test_forced_the_network_goes_while_the_removal_stays_under_review(
    moto_settings: config.Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = moto_settings
    on_main(settings, fleet_signer, rendered(settings))

    code, log = delete_demo(settings, force=True)

    assert code == 0
    assert "==> destroy" in log
    assert has_branch(settings, "cluster/demo")
    assert not [path for path in tree(settings, "cluster/demo") if "demo" in path]
    out = capsys.readouterr().out
    assert "next: python -m pipeline approve demo" in out


def test_a_concurrent_run_for_the_cluster_is_blocked(settings: config.Settings, fleet_signer: signing.Signer) -> None:
    on_main(settings, fleet_signer, rendered(settings))
    refs = fleet_refs(settings.fleet)
    with journal.run(settings.journal_dir, "demo", "new-cluster"), pytest.raises(RunInProgress):
        delete_demo(settings)
    assert fleet_refs(settings.fleet) == refs


def test_a_name_that_is_not_a_dns_label_is_refused_before_anything(settings: config.Settings) -> None:
    with pytest.raises(BadInput, match="DNS-1123"):
        delete_demo(settings, name="../demo")
    assert not settings.journal_dir.exists()
