from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline import fleet, keys, signing
from pipeline.approve import approve, keys_review
from pipeline.commands import keys as keys_command
from pipeline.config import Settings
from pipeline.errors import EXIT_BAD_INPUT, BadInput, SigningError
from pipeline.report import Reporter
from pipeline.signing import Signer
from pipeline.verify import verify_fleet
from tests import fleet_calls
from tests.fixtures import another_local_key, fleet_git, fleet_refs, push_by_hand
from tests.fixtures_render import schemas_from
from tests.test_cli import run_cli


def approve_keys(settings: Settings) -> None:
    """The reviewed landing of keys/rotation, signed by whoever the fleet trusts on main."""
    approve(keys_review(), settings, signing.signer_for(settings))


def listed_keys(settings: Settings, rev: str) -> list[str]:
    names = fleet_git(settings.fleet, "ls-tree", "--name-only", f"{rev}:flux/system/keys").split()
    kustomization = yaml.safe_load(fleet_git(settings.fleet, "show", f"{rev}:{fleet.SYSTEM_KUSTOMIZATION}"))
    assert kustomization["secretGenerator"][0]["files"] == [f"keys/{name}" for name in names]
    return [name.removesuffix(".asc") for name in names]


def built_secret(settings: Settings, rev: str, tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "system"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "--git-dir", settings.fleet, "archive", rev, "flux/system"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    built = subprocess.run(
        ["kubectl", "kustomize", str(folder / "flux/system")], capture_output=True, text=True, check=True
    ).stdout
    secret = next(doc for doc in yaml.safe_load_all(built) if doc["kind"] == "Secret")
    assert secret["metadata"]["name"] == fleet.TRUSTED_KEYS_REF
    return dict(secret["data"])


def test_add_commits_the_key_signed_and_listed_in_the_secret(
    settings: Settings, fleet_signer: Signer, second_signer: Signer, tmp_path: Path
) -> None:
    main = fleet_git(settings.fleet, "rev-parse", "main")

    result = keys.add(settings, fleet_signer, signing.export_public(second_signer))

    assert (result.branch, result.changed, result.signer) == ("keys/rotation", True, fleet_signer.fingerprint)
    assert fleet_git(settings.fleet, "rev-parse", "keys/rotation").strip() == result.commit
    assert fleet_git(settings.fleet, "rev-parse", "main") == main
    both = sorted([fleet_signer.fingerprint, second_signer.fingerprint])
    assert listed_keys(settings, "keys/rotation") == both
    assert sorted(built_secret(settings, "keys/rotation", tmp_path)) == [f"{fpr}.asc" for fpr in both]
    trusted = fleet_calls.trusted_keys(settings)
    assert signing.verify_commit(Path(settings.fleet), "keys/rotation", trusted) == fleet_signer.fingerprint
    assert fleet_git(settings.fleet, "log", "-1", "--format=%s", "keys/rotation").strip() == (
        f"keys: trust {second_signer.fingerprint}"
    )


def test_adding_a_listed_key_again_commits_nothing(
    settings: Settings, fleet_signer: Signer, second_signer: Signer
) -> None:
    first = keys.add(settings, fleet_signer, signing.export_public(second_signer))
    refs = fleet_refs(settings.fleet)

    again = keys.add(settings, fleet_signer, signing.export_public(second_signer))
    own = keys.add(settings, fleet_signer, signing.export_public(fleet_signer))

    assert (again.changed, again.commit) == (False, first.commit)
    assert not own.changed
    assert fleet_refs(settings.fleet) == refs


def test_a_key_not_trusted_on_main_changes_nothing(
    settings: Settings, fleet_signer: Signer, second_signer: Signer
) -> None:
    refs = fleet_refs(settings.fleet)

    with pytest.raises(SigningError, match="not trusted on main") as raised:
        keys.add(settings, second_signer, signing.export_public(second_signer))

    assert "keys export" in str(raised.value)
    assert fleet_refs(settings.fleet) == refs


def test_a_key_added_on_the_branch_cannot_sign_before_approval(
    settings: Settings, fleet_signer: Signer, second_signer: Signer
) -> None:
    keys.add(settings, fleet_signer, signing.export_public(second_signer))
    refs = fleet_refs(settings.fleet)

    with pytest.raises(SigningError, match="not trusted on main"):
        keys.retire(settings, second_signer, fleet_signer.fingerprint)

    assert fleet_refs(settings.fleet) == refs


def test_retire_refuses_the_signers_own_key(settings: Settings, fleet_signer: Signer, second_signer: Signer) -> None:
    keys.add(settings, fleet_signer, signing.export_public(second_signer))
    approve_keys(settings)

    with pytest.raises(BadInput, match="sign with another trusted key first"):
        keys.retire(settings, fleet_signer, fleet_signer.fingerprint)


def test_retire_refuses_to_leave_no_key(settings: Settings, fleet_signer: Signer, second_signer: Signer) -> None:
    keys.add(settings, fleet_signer, signing.export_public(second_signer))
    approve_keys(settings)
    keys.retire(settings, fleet_signer, second_signer.fingerprint)  # the branch keeps only the first key
    refs = fleet_refs(settings.fleet)

    with pytest.raises(BadInput, match="last trusted key"):
        keys.retire(settings, second_signer, fleet_signer.fingerprint)

    assert fleet_refs(settings.fleet) == refs


def test_retire_refuses_an_unknown_key_naming_the_trusted_ones(settings: Settings, fleet_signer: Signer) -> None:
    with pytest.raises(BadInput, match=f"trusted keys: {fleet_signer.fingerprint}$"):
        keys.retire(settings, fleet_signer, "0" * 40)


def test_a_full_rotation_leaves_main_verifiable_by_the_new_key_only(
    settings: Settings, fleet_signer: Signer, second_signer: Signer
) -> None:
    keys.add(settings, fleet_signer, signing.export_public(second_signer))
    approve_keys(settings)
    spaced = " ".join(fleet_signer.fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    retired = keys.retire(settings, second_signer, spaced)
    assert not keys.retire(settings, second_signer, fleet_signer.fingerprint).changed  # already on the branch
    approve_keys(settings)

    assert listed_keys(settings, "main") == [second_signer.fingerprint]
    result = verify_fleet(settings, schemas_from(str(settings.crds_dir)))
    assert (result.findings, result.commit, result.signer) == ((), retired.commit, second_signer.fingerprint)


def test_a_rotation_landing_signed_by_the_key_it_retires_is_refused_with_nothing_pushed(
    settings: Settings, fleet_signer: Signer, second_signer: Signer, tmp_path: Path
) -> None:
    keys.add(settings, fleet_signer, signing.export_public(second_signer))
    approve_keys(settings)
    keys.retire(settings, second_signer, fleet_signer.fingerprint)
    # Main moves on, so the landing is a merge that the approving key signs: the very key retired.
    push_by_hand(settings.fleet, tmp_path / "work", "main", {"docs/operations.md": "on call: platform\n"}, fleet_signer)
    refs = fleet_refs(settings.fleet)

    env = {"PIPELINE_STATE_DIR": str(settings.state_dir), "PIPELINE_FLEET": settings.fleet}
    result = run_cli(tmp_path, "approve", "--keys", "--json", env=env)

    message = (
        f"keys/rotation retires key {fleet_signer.fingerprint}, which would sign main's new head: Flux would refuse "
        "main once it holds the new keys; sign with a key that stays trusted (the local target always signs with "
        "its local key: use --target aws and set PIPELINE_SIGNING_KEY to its fingerprint) and approve again"
    )
    assert (result.returncode, json.loads(result.stdout)) == (EXIT_BAD_INPUT, {"error": message, "exit_code": 2})
    assert result.stderr.splitlines()[-1] == f"error: {message}"
    assert fleet_refs(settings.fleet) == refs


def test_a_rotation_head_signed_by_the_key_it_retires_lands_under_a_merge_a_staying_key_signs(
    settings: Settings, fleet_signer: Signer, second_signer: Signer
) -> None:
    keys.add(settings, fleet_signer, signing.export_public(second_signer))
    approve_keys(settings)
    keys.retire(settings, second_signer, fleet_signer.fingerprint)
    with another_local_key() as third:
        # Still trusted on main, the retired key adds a third on top: the branch's head is signed by it.
        head = keys.add(settings, fleet_signer, signing.export_public(third)).commit

        approval = approve(keys_review(), settings, second_signer)

        assert (approval.how, approval.signer) == ("merge", second_signer.fingerprint)
        assert fleet_git(settings.fleet, "rev-parse", "main^2").strip() == head
        assert sorted(listed_keys(settings, "main")) == sorted([second_signer.fingerprint, third.fingerprint])
    result = verify_fleet(settings, schemas_from(str(settings.crds_dir)))
    assert (result.findings, result.signer) == ((), second_signer.fingerprint)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not a key\n", "not an ASCII-armored public key"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbroken\n-----END PGP PUBLIC KEY BLOCK-----\n", "gpg cannot read"),
    ],
)
def test_a_file_that_is_not_a_public_key_is_bad_input(content: str, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        keys.public_key(content)


def test_two_keys_in_one_file_are_bad_input(fleet_signer: Signer, second_signer: Signer) -> None:
    both = signing.export_public(fleet_signer) + signing.export_public(second_signer)

    with pytest.raises(BadInput, match="holds 2 public keys; give exactly one"):
        keys.public_key(both)


def test_the_key_file_fingerprint_is_the_primary_keys(fleet_signer: Signer) -> None:
    key = keys.public_key(signing.export_public(fleet_signer))

    assert key.fingerprint == fleet_signer.fingerprint
    assert key.user_id == signing.LOCAL_KEY_UID


def test_keys_add_command_prints_the_branch_and_next_step(
    settings: Settings,
    fleet_signer: Signer,
    second_signer: Signer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key_file = tmp_path / "new.asc"
    key_file.write_text(signing.export_public(second_signer))

    assert keys_command.run("add", settings, Reporter(), str(key_file)) == 0

    head = fleet_git(settings.fleet, "rev-parse", "keys/rotation").strip()
    assert capsys.readouterr().out == (
        f"keys/rotation at {head}: trusting the key in {key_file}, signed by {fleet_signer.fingerprint}\n"
        "next: review keys/rotation, then `python -m pipeline approve --keys`\n"
    )


def test_keys_command_needs_its_argument(settings: Settings) -> None:
    with pytest.raises(BadInput, match="needs a fingerprint"):
        keys_command.run("retire", settings, Reporter())


def test_a_file_carrying_a_secret_key_is_refused(second_signer: Signer) -> None:
    export = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys"]
    with signing.gpg_env(second_signer.gnupg_home) as env:
        secret = subprocess.run(
            [*export, second_signer.fingerprint],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    with pytest.raises(BadInput, match="holds a secret key"):
        keys.public_key(signing.export_public(second_signer) + secret)
