from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import is_git_url, load_settings
from pipeline.errors import BadInput


def test_defaults_serve_a_newcomer(tmp_path: Path):
    settings = load_settings({"HOME": str(tmp_path / "home")}, tmp_path)
    assert settings.target == "local"
    assert settings.state_dir == tmp_path / ".pipeline"
    assert settings.fleet == str(tmp_path / "fleet.git")
    assert settings.crds_dir is None
    assert settings.plugin_cache == tmp_path / "home" / ".cache" / "fleet-pipeline" / "plugins"
    assert settings.terraform_work_dir("demo") == tmp_path / ".pipeline" / "terraform" / "demo"


def test_environment_and_flags(tmp_path: Path):
    env = {
        "PIPELINE_STATE_DIR": "state",
        "PIPELINE_FLEET": "elsewhere.git",
        "PIPELINE_CRDS_DIR": "crds",
        "PIPELINE_AWS_ENDPOINT": "http://127.0.0.1:5000",
        "PIPELINE_PLUGIN_CACHE": "/var/cache/tf",
    }
    settings = load_settings(env, tmp_path, target="aws", fleet="git@github.com:acme/fleet.git")
    assert settings.target == "aws"
    assert settings.fleet == "git@github.com:acme/fleet.git"  # the flag wins, URLs stay as given
    assert settings.crds_dir == tmp_path / "crds"
    assert settings.aws_endpoint == "http://127.0.0.1:5000"
    assert settings.plugin_cache == Path("/var/cache/tf")


def test_an_unknown_target_is_bad_input(tmp_path: Path):
    with pytest.raises(BadInput, match="use 'local' or 'aws'"):
        load_settings({"PIPELINE_TARGET": "gcp"}, tmp_path)


@pytest.mark.parametrize(
    ("location", "url"),
    [("https://github.com/a/b.git", True), ("git@github.com:a/b.git", True), ("./fleet.git", False)],
)
def test_git_urls_are_told_from_paths(location: str, url: bool):
    assert is_git_url(location) is url
