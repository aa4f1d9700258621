"""Every held-out row scored item by item, for the base model and for adapters.

Trials generate only ``evaluation.generation_samples`` rows per rung, to keep rungs cheap.
Promotion and A/B reports need the paired evidence of every row, so this module scores them all.
Each (base model, adapter weights, data, settings) is scored once; the result is cached under
the cache root (``$LORA_SWEEP_CACHE``) and read back after that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sweeps.state import SweepState, write_json_atomic

# What held-out scores depend on besides the model and the data files: one list for both caches
# (every row here, the base model's there in sweeps/base_scores.py).
HELDOUT_SETTINGS = ("task_metric", "template", "system_prompt", "columns", "val_set_size",
                    "split_seed", "data_format", "instruction", "label_field", "evaluation")  # fmt: skip

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class ItemScores:
    """One model's scores on every held-out row: the means, and one dict per row."""

    metrics: dict[str, float]
    items: list[dict[str, Any]]

    def by_item(self, key: str = "score") -> dict[str, float]:
        """``{item id: value}``: what a paired test compares."""
        return {item["id"]: float(item[key]) for item in self.items}


def load_spec(state: SweepState) -> Any:
    """The TrialSpec the sweep's trials ran with, read back from ``trial_spec.json``."""
    from sweeps.config import ConfigError
    from trainers.lora_trial import TrialSpec

    if not state.spec_path.is_file():
        raise ConfigError(
            f"sweep {state.name}: {state.spec_path} is missing (made by an older version); "
            "re-run the sweep to promote or compare it"
        )
    return TrialSpec(**json.loads(state.spec_path.read_text()))


REPORT_MAX_NEW_TOKENS = 256  # promote and compare show whole answers, the base model's too


def all_rows(spec: Any) -> Any:
    """The spec with generation on every held-out row, not just ``generation_samples``, and
    room for a whole answer: a rung's ``max_new_tokens`` is sized for speed, and cut the base
    model's rambling answers mid-sentence in the A/B report."""
    limit = max(int(spec.evaluation.get("max_new_tokens", 64)), REPORT_MAX_NEW_TOKENS)
    evaluation = {**spec.evaluation, "generation_samples": None, "max_new_tokens": limit}
    return replace(spec, evaluation=evaluation, benchmarks=None)


def adapter_digest(adapter: Path) -> str:
    """sha256 over the adapter's config and weights: the same weights give the same digest."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(name.encode())
        digest.update((adapter / name).read_bytes())
    return digest.hexdigest()


def data_digests(spec: Any) -> dict[str, str]:
    """sha256 of the data files as they are now (the held-out rows come from them)."""
    from trainers.data import file_digest

    paths = {"train": spec.train_path, "heldout": spec.heldout_path}
    return {role: file_digest(Path(path)) for role, path in paths.items() if path}


def cache_path(spec: Any, adapter: Path | None) -> Path:
    """Where one model's item scores are cached, keyed by everything they depend on."""
    from trainers.models import cache_root, model_identity

    key = {
        "model": model_identity(Path(spec.model_path)),
        "adapter": adapter_digest(adapter) if adapter is not None else "base",
        "data": data_digests(spec),
        "settings": {k: getattr(spec, k) for k in HELDOUT_SETTINGS},
    }  # fmt: skip
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "heldout_items" / f"{name}.json"


def store_scores(path: Path, scores: ItemScores) -> None:
    write_json_atomic(path, {"metrics": scores.metrics, "items": scores.items})


def score_every_row(
    spec: Any, models: Mapping[str, Path | None], *, progress: Callable[[str], None] = print
) -> dict[str, ItemScores]:
    """Item scores for each named model (``None``: the base), from the cache when present.

    The base model is loaded once; each adapter is put on it, scored and taken off again.
    """
    spec = all_rows(spec)
    paths = {label: cache_path(spec, adapter) for label, adapter in models.items()}
    out = {label: _read(path) for label, path in paths.items() if path.is_file()}
    missing = [label for label in models if label not in out]
    if missing:
        out.update(_score(spec, {label: models[label] for label in missing}, progress=progress))
        for label in missing:
            store_scores(paths[label], out[label])
    return {label: out[label] for label in models}


def _read(path: Path) -> ItemScores:
    raw = json.loads(path.read_text())
    return ItemScores(metrics=raw["metrics"], items=raw["items"])


def _score(
    spec: Any, models: Mapping[str, Path | None], *, progress: Callable[[str], None]
) -> dict[str, ItemScores]:
    from evals.heldout import score_heldout
    from trainers.lora_trial import heldout_inputs, load_trial_examples
    from trainers.models import load_causal_lm, load_tokenizer
    from trainers.tokenize import resolve_template

    path = Path(spec.model_path)
    tokenizer = load_tokenizer(path, trust_remote_code=spec.trust_remote_code)
    template = resolve_template(tokenizer, spec.template)
    _, heldout = load_trial_examples(spec)
    tokenized, prompts, references = heldout_inputs(spec, heldout, tokenizer, template)
    device = spec.device if _device_available(spec.device) else "cpu"
    model = load_causal_lm(path, trust_remote_code=spec.trust_remote_code, device=device)
    out = {}
    for label, adapter in models.items():
        progress(f"Scoring {label} on all {len(prompts)} held-out rows ...")
        scored = model if adapter is None else _with_adapter(model, adapter)
        scores = score_heldout(
            scored.eval(), tokenizer, tokenized=tokenized, prompts=prompts,
            references=references, task_metric=spec.task_metric,
            batch_size=int(spec.evaluation.get("batch_size", 16)),
            max_new_tokens=int(spec.evaluation.get("max_new_tokens", 64)),
        )  # fmt: skip
        if adapter is not None:
            model = scored.unload()  # the bare base again, for the next adapter
        items = [{"id": _item_id(i, item), **item} for i, item in enumerate(scores.items)]
        out[label] = ItemScores(metrics=scores.as_metrics(), items=items)
    return out


def _device_available(device: str) -> bool:
    """A GPU sweep can be promoted or compared on a machine without one (on CPU)."""
    import torch

    return not device.startswith("cuda") or torch.cuda.is_available()


def _with_adapter(model: Any, adapter: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter))


def _item_id(index: int, item: Mapping[str, Any]) -> str:
    """Row number plus a digest of its prompt and reference: ids match only on the same rows."""
    text = json.dumps([item["prompt"], item["reference"]])
    return f"{index:05d}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
