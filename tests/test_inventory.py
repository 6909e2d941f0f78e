from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from pipeline import approve, aws, fleet, inventory, journal, network, render, shared_journal, signing
from pipeline.commands import list_clusters, status
from pipeline.config import Settings
from pipeline.errors import AwsError, BadInput
from pipeline.model import AwsAccess
from pipeline.report import Reporter
from tests import fleet_calls
from tests.fixtures import fleet_git, free_port, push_by_hand
from tests.fixtures_render import MANAGEMENT_CIDRS, sample_outputs, sample_spec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CREDENTIALS = (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"))
TRAILERS = {"Pipeline-Run": "run-1"}
DEMO_CIDR = "10.20.0.0/16"
OTHER_CIDR = "10.30.0.0/16"


@pytest.fixture
def with_moto(settings: Settings, moto_endpoint: str) -> Settings:
    """The local target on the session's moto server, with a state bucket of this test's own."""
    return dataclasses.replace(settings, aws_endpoint=moto_endpoint, state_bucket=f"state-{uuid.uuid4().hex[:12]}")


def _s3(endpoint: str) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _put_state(settings: Settings, name: str, body: str) -> None:
    assert settings.aws_endpoint is not None and settings.state_bucket is not None
    s3 = _s3(settings.aws_endpoint)
    s3.create_bucket(Bucket=settings.state_bucket)
    s3.put_object(Bucket=settings.state_bucket, Key=f"clusters/{name}/network.tfstate", Body=body.encode())


def _state(serial: int) -> str:
    return json.dumps({"version": 4, "serial": serial, "lineage": "test", "outputs": {}, "resources": []})


def _propose(settings: Settings, signer: signing.Signer, name: str, cidr: str, **changes: object) -> str:
    """The cluster's rendered manifests as a signed commit on cluster/NAME; its id."""
    manifests = render.render(
        sample_spec(name, cidr, **changes), sample_outputs(cidr), settings.templates_dir, MANAGEMENT_CIDRS
    )
    result = fleet_calls.commit(manifests, settings, signer, TRAILERS, "create")
    assert result.commit is not None
    return result.commit


def _land(settings: Settings, signer: signing.Signer, name: str, cidr: str) -> str:
    _propose(settings, signer, name, cidr)
    return approve.approve(approve.cluster_review(name), settings, signer).main


def _commit_on_main(settings: Settings, work: Path, path: str, signer: signing.Signer | None) -> str:
    """A commit on top of main adding `path`, signed by `signer` (None: unsigned), made main by update-ref."""
    head = push_by_hand(settings.fleet, work, "scratch", {path: "note\n"}, signer)
    fleet_git(settings.fleet, "update-ref", "refs/heads/main", head)
    fleet_git(settings.fleet, "update-ref", "-d", "refs/heads/scratch")
    return head


def _by_name(statuses: tuple[inventory.ClusterStatus, ...]) -> dict[str, inventory.ClusterStatus]:
    return {s.name: s for s in statuses}


def _no_aws(region: str) -> AwsAccess | None:
    return None


def test_lists_a_landed_signed_cluster_with_its_serial_and_an_unlanded_one_with_its_review_branch(
    with_moto: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    main = _land(with_moto, fleet_signer, "demo", DEMO_CIDR)
    _put_state(with_moto, "demo", _state(7))
    proposed = _propose(with_moto, fleet_signer, "other", OTHER_CIDR)

    demo, other = inventory.fleet_status(with_moto, list_clusters.reachable_access(with_moto))

    assert demo == inventory.ClusterStatus(
        name="demo",
        region="us-east-1",
        vpc_cidr=DEMO_CIDR,
        commit=main,
        signature=fleet_signer.fingerprint,
        review_branch=None,  # landed by fast-forward: its head is main's
        review_head=None,
        state_serial=7,
        state_unknown=None,
        last_run=None,
        health="unknown",
        health_detail="the fleet is not on a forge that Flux reports to; set PIPELINE_GITHUB_REPO when it is",
    )
    assert (other.commit, other.signature) == (None, None)
    assert (other.review_branch, other.review_head) == ("cluster/other", proposed)
    assert (other.region, other.vpc_cidr) == ("us-east-1", OTHER_CIDR)
    assert (other.state_serial, other.state_unknown) == (None, None)  # no state object yet

    assert list_clusters.run(with_moto, Reporter()) == 0
    header, demo_row, other_row, unknown = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["NAME", "REGION", "CIDR"]
    assert demo_row.split() == [
        "demo",
        "us-east-1",
        DEMO_CIDR,
        main[:12],
        fleet_signer.fingerprint[-16:],
        "-",
        "7",
        "unknown",
        "-",
    ]
    assert other_row.split() == [
        "other",
        "us-east-1",
        OTHER_CIDR,
        "-",
        "-",
        f"cluster/other@{proposed[:12]}",
        "none",
        "unknown",
        "-",
    ]
    assert (
        unknown
        == "health unknown: the fleet is not on a forge that Flux reports to; set PIPELINE_GITHUB_REPO when it is"
    )


def test_a_commit_on_main_signed_by_an_untrusted_key_or_unsigned_says_so(
    settings: Settings, fleet_signer: signing.Signer, second_signer: signing.Signer, tmp_path: Path
) -> None:
    _land(settings, fleet_signer, "demo", DEMO_CIDR)
    _land(settings, fleet_signer, "other", OTHER_CIDR)
    untrusted = _commit_on_main(settings, tmp_path / "a", "clusters/demo/notes.txt", second_signer)
    unsigned = _commit_on_main(settings, tmp_path / "b", "clusters/other/notes.txt", None)

    found = _by_name(inventory.fleet_status(settings, _no_aws))

    assert (found["demo"].commit, found["demo"].signature) == (untrusted, inventory.UNTRUSTED)
    assert (found["other"].commit, found["other"].signature) == (unsigned, inventory.UNSIGNED)


def test_json_is_stable_and_parseable(
    with_moto: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    _land(with_moto, fleet_signer, "demo", DEMO_CIDR)
    _put_state(with_moto, "demo", _state(7))
    _propose(with_moto, fleet_signer, "other", OTHER_CIDR)

    assert list_clusters.run(with_moto, Reporter(as_json=True)) == 0
    first = capsys.readouterr().out
    assert list_clusters.run(with_moto, Reporter(as_json=True)) == 0
    assert capsys.readouterr().out == first
    clusters = json.loads(first)["clusters"]
    assert [c["name"] for c in clusters] == ["demo", "other"]
    assert (clusters[0]["signature"], clusters[0]["state_serial"]) == (fleet_signer.fingerprint, 7)

    assert status.run("demo", with_moto, Reporter(as_json=True)) == 0
    assert json.loads(capsys.readouterr().out) == clusters[0]


def test_status_shows_the_last_run_from_the_journal(
    settings: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    _land(settings, fleet_signer, "demo", DEMO_CIDR)
    with pytest.raises(RuntimeError), journal.run(settings.journal_dir, "demo", "new-cluster"):
        raise RuntimeError("terraform apply failed")
    record = journal.last_run(settings.journal_dir, "demo")
    assert record is not None

    assert status.run("demo", settings, Reporter()) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["last-run"] == record["run"]
    assert lines["last-run-command"] == "new-cluster"
    assert lines["last-run-status"] == "failed"
    assert lines["last-run-finished"] == record["finished"]
    assert lines["last-run-error"] == "terraform apply failed"
    assert lines["signature"] == fleet_signer.fingerprint
    assert lines["review-branch"] == "none"


def test_aws_out_of_reach_leaves_the_serial_unknown_with_the_reason(
    settings: Settings, fleet_signer: signing.Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    _land(settings, fleet_signer, "demo", DEMO_CIDR)

    # The local target with no endpoint started: nothing is started just to look.
    assert list_clusters.run(settings, Reporter()) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[6] == "unknown"
    assert out[2].startswith("state serial unknown: no AWS endpoint is running")
    assert status.run("demo", settings, Reporter()) == 0
    assert "state-serial: unknown (no AWS endpoint is running" in capsys.readouterr().out

    settings.state_dir.joinpath("local-endpoint.json").write_text("{not json")
    (demo,) = inventory.fleet_status(settings, list_clusters.reachable_access(settings))
    assert demo.state_unknown is not None and "local-endpoint.json is unreadable" in demo.state_unknown

    closed = AwsAccess(region="us-east-1", endpoint=f"http://127.0.0.1:{free_port()}", env=CREDENTIALS)
    (demo,) = inventory.fleet_status(settings, lambda region: closed)
    assert demo.state_serial is None
    assert demo.state_unknown is not None and "sts:GetCallerIdentity" in demo.state_unknown


def test_status_of_an_unknown_cluster_names_the_known_ones(settings: Settings, fleet_signer: signing.Signer) -> None:
    _propose(settings, fleet_signer, "demo", DEMO_CIDR)
    with pytest.raises(BadInput, match=r"cluster 'nope' is not in the fleet .* \(known: demo\)") as caught:
        status.run("nope", settings, Reporter())
    assert caught.value.exit_code == 2


def test_no_fleet_or_an_empty_one_is_said_and_is_not_a_failure(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert list_clusters.run(settings, Reporter()) == 0
    assert capsys.readouterr().out.startswith(f"no fleet at {settings.fleet} yet")
    assert list_clusters.run(settings, Reporter(as_json=True)) == 0
    assert json.loads(capsys.readouterr().out) == {"clusters": []}
    with pytest.raises(BadInput, match="no fleet at"):
        status.run("demo", settings, Reporter())

    fleet.ensure_fleet(settings, signing.signer_for(settings))
    assert list_clusters.run(settings, Reporter()) == 0
    assert capsys.readouterr().out == f"no clusters in the fleet {settings.fleet}\n"


def test_state_serial_reads_the_state_object_and_none_when_absent(moto_endpoint: str) -> None:
    access = AwsAccess(region="us-east-1", endpoint=moto_endpoint, env=CREDENTIALS)
    bucket = f"state-{uuid.uuid4().hex[:12]}"
    assert aws.state_serial(access, bucket, "clusters/demo/network.tfstate") is None  # no bucket
    s3 = _s3(moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    assert aws.state_serial(access, bucket, "clusters/demo/network.tfstate") is None  # no object
    s3.put_object(Bucket=bucket, Key="clusters/demo/network.tfstate", Body=_state(12).encode())
    assert aws.state_serial(access, bucket, "clusters/demo/network.tfstate") == 12
    s3.put_object(Bucket=bucket, Key="clusters/bad/network.tfstate", Body=b"<html>")
    with pytest.raises(AwsError, match="is not Terraform state"):
        aws.state_serial(access, bucket, "clusters/bad/network.tfstate")


def test_status_shows_the_last_run_of_any_machine_from_the_bucket_and_list_this_machines(
    with_moto: Settings, fleet_signer: signing.Signer, tmp_path: Path
) -> None:
    _land(with_moto, fleet_signer, "demo", DEMO_CIDR)
    access_for = list_clusters.reachable_access(with_moto)
    access = access_for("us-east-1")
    assert access is not None and with_moto.state_bucket is not None
    aws.ensure_state_bucket(access, with_moto.state_bucket)
    # A run on another machine (a CI runner): its own state dir, the same bucket.
    copy = shared_journal.BucketCopy(access, with_moto.state_bucket, network.journal_key("demo"))
    with pytest.raises(RuntimeError), journal.run(tmp_path / "runner", "demo", "new-cluster") as elsewhere:
        elsewhere.share(copy)
        raise RuntimeError("terraform apply failed")

    shown = inventory.cluster_status(with_moto, "demo", access_for).last_run
    assert shown is not None
    assert (shown.run, shown.status, shown.error) == (elsewhere.record["run"], "failed", "terraform apply failed")
    (listed,) = inventory.fleet_status(with_moto, access_for)
    assert listed.last_run is None  # this machine never ran it, and a listing reads no record per cluster
