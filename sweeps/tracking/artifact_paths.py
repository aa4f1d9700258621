"""Where a tracking store keeps a run's files, decided without mlflow: a local sqlite store's
directory and its artefacts beside it, and artefact paths kept inside their run."""

from __future__ import annotations

from pathlib import Path

from sweeps.config import ConfigError


def default_artifact_root(tracking_uri: str) -> str | None:
    """For a local sqlite store, artefacts go in ``artifacts/`` beside the database."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.resolve().parent / "artifacts").as_uri()
    return None


def prepare_store(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent.mkdir(
            parents=True, exist_ok=True
        )


def checked_artifact_path(path: str) -> str:
    """An artefact path relative to the run's root: no absolute path, '..', NUL or backslash."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\x00" in path or "\\" in path or ".." in parts:
        raise ConfigError(
            f"artifact path {path!r} must stay inside the run's artifacts "
            "(relative, no '..', NUL or backslash)"
        )
    return path
