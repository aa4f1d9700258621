"""Provenance tags, and secrets that never become params."""

from __future__ import annotations

from pathlib import Path

from sweeps.tracking.provenance import flatten, git_info, is_secret, provenance_tags
from tests.conftest import REPO


def test_secret_keys_and_values_are_left_out() -> None:
    config = {
        "tracking": {"mlflow_uri": "sqlite:///x", "api_key": "abc"},
        "hf_token": "x",
        "data": {"train": "t.jsonl", "note": "hf_" + "a" * 30},
        "password": "p",
        "seed": 1,
    }
    flat = flatten(config)
    assert flat == {"tracking.mlflow_uri": "sqlite:///x", "data.train": "t.jsonl", "seed": 1}
    assert is_secret("AWS_SECRET_ACCESS_KEY", "x") and not is_secret("learning_rate", 0.1)


def test_tags_carry_commit_versions_hardware_seeds_and_digests(tmp_path: Path) -> None:
    tags = provenance_tags(seeds={"training": 42}, digests={"train": "abc"})
    assert tags["seed.training"] == "42" and tags["dataset.train.sha256"] == "abc"
    assert tags["version.torch"] and tags["hardware.cpu_count"]
    assert git_info(tmp_path) == {"git.commit": "unknown", "git.dirty": "unknown"}
    info = git_info(REPO)
    assert len(info["git.commit"]) == 40 and info["git.dirty"] in ("true", "false")
