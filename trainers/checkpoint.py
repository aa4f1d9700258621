"""A trial's checkpoint: the adapter in PEFT format, the optimizer, scheduler and RNG state,
the progress and the held-out predictions, sealed by a manifest of every file's sha256."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from evals.heldout import HeldoutScores
from trainers.data import file_digest
from trainers.recipe import Progress, Recipe

ADAPTER_DIR = "adapter"


STATE_FILE = "trainer_state.json"


TENSORS_FILE = "training_state.pt"


PREDICTIONS_FILE = "predictions.jsonl"


MANIFEST_FILE = "manifest.json"  # written last: every file's size and sha256


TRAINED_ADAPTER = "adapter"  # in TENSORS_FILE when ADAPTER_DIR holds a converted PiSSA/OLoRA one


def save_checkpoint(
    recipe: Recipe,
    directory: Path,
    scores: HeldoutScores,
    *,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Adapter in PEFT format, optimizer/scheduler/RNG state, progress, held-out predictions, and
    the metrics the rung reports with it (``reported_metrics``)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_adapter(recipe, directory / ADAPTER_DIR)
    tensors = {
        "optimizer": recipe.optimizer.state_dict(),
        "scheduler": recipe.scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    if recipe.scaler is not None:
        tensors["scaler"] = recipe.scaler.state_dict()
    if recipe.initial_adapter is not None:  # a restart goes on from the adapter as it trains
        from peft import get_peft_model_state_dict

        tensors[TRAINED_ADAPTER] = get_peft_model_state_dict(recipe.model)
    torch.save(tensors, directory / TENSORS_FILE)
    state = {
        "progress": asdict(recipe.progress),
        "hparams": recipe.hparams.model_dump(mode="json"),
        "total_steps": recipe.total_steps,
        "metrics": metrics or {},
    }
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
    with (directory / PREDICTIONS_FILE).open("w") as handle:
        for item in scores.items:
            handle.write(json.dumps(item) + "\n")
    return directory


def save_adapter(recipe: Recipe, directory: Path) -> None:
    """The adapter in PEFT format, loadable on the base model as it was.

    PiSSA and OLoRA trained against a base they rewrote, so their adapter is saved converted, as
    PEFT documents, to a plain LoRA of rank 2r (B A - B0 A0): loading it leaves the base untouched,
    which scoring several adapters on one loaded base needs."""
    if recipe.initial_adapter is None:
        recipe.model.save_pretrained(str(directory))
        return
    import tempfile
    import warnings

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # PEFT loads the initial adapter beside the trained one for the conversion, and warns
        # that PiSSA/OLoRA adapters should be converted before they share a base: this is that
        warnings.filterwarnings("ignore", "(PiSSA|OLoRA) changes the base weights")
        initial = Path(scratch) / "initial"  # PEFT writes its adapter_config.json here
        initial.mkdir()
        save_file(recipe.initial_adapter, str(initial / "adapter_model.safetensors"))
        recipe.model.save_pretrained(
            str(directory), path_initial_model_for_weight_conversion=str(initial)
        )


def seal_checkpoint(directory: Path) -> None:
    """Write the manifest (each file's size and sha256) last: a checkpoint without one, or whose
    files no longer match it, was cut short or damaged."""
    files = {
        str(path.relative_to(directory)): {
            "bytes": path.stat().st_size,
            "sha256": file_digest(path),
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    (directory / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1))


def checkpoint_problem(directory: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (missing, truncated or altered files), or None."""
    manifest = directory / MANIFEST_FILE
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST_FILE} is missing or unreadable (the checkpoint was cut short)"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were written"
        if file_digest(path) != expected["sha256"]:
            return f"{name} does not match its sha256"
    return None


def checkpoint_step(directory: Path) -> int:
    """The optimizer step a checkpoint was saved at (its progress in STATE_FILE)."""
    return int(json.loads((directory / STATE_FILE).read_text())["progress"]["step"])


def reported_metrics(directory: Path) -> dict[str, float]:
    """The metrics reported with a checkpoint (empty for one saved before they were kept)."""
    metrics: dict[str, float] = json.loads((directory / STATE_FILE).read_text()).get("metrics", {})
    return metrics


def load_checkpoint(recipe: Recipe, directory: Path) -> None:
    """Continue from a checkpoint: adapter weights, optimizer, scheduler, RNG and progress."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    tensors = torch.load(directory / TENSORS_FILE, weights_only=True)  # no arbitrary pickles
    weights = tensors.get(TRAINED_ADAPTER) or load_file(
        str(directory / ADAPTER_DIR / "adapter_model.safetensors")
    )
    set_peft_model_state_dict(recipe.model, weights)
    recipe.optimizer.load_state_dict(tensors["optimizer"])
    recipe.scheduler.load_state_dict(tensors["scheduler"])
    torch.set_rng_state(tensors["rng"])
    if recipe.scaler is not None and "scaler" in tensors:
        recipe.scaler.load_state_dict(tensors["scaler"])
    state = json.loads((directory / STATE_FILE).read_text())
    recipe.progress = Progress(**state["progress"])
