"""Every held-out row scored item by item, for the base model and for adapters.

Trials generate only ``evaluation.generation_samples`` rows per rung, to keep rungs cheap.
Promotion and A/B reports need the paired evidence of every row, so this module scores them all.
Each (base model, adapter weights, data, settings) is scored once; the result is cached under
the cache root (``$LORA_SWEEP_CACHE``) and read back after that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evals.heldout import ScoredItem
from sweeps.console import Say
from sweeps.tracking.state import SweepState, write_json_atomic
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ScoredRow(ScoredItem):
    """A held-out row's scores with the row's id (:func:`_item_id`): what a paired test pairs."""

    id: str


@dataclass(frozen=True)
class ItemScores:
    """One model's scores on every held-out row: the means, and one dict per row."""

    metrics: dict[str, float]
    items: list[ScoredRow]

    def by_item(self, key: str = "score") -> dict[str, float]:
        """``{item id: value}``: what a paired test compares (``key``: score or exact_match)."""
        return {item["id"]: _value(item, key) for item in self.items}


def _value(item: ScoredRow, key: str) -> float:
    if key == "score":
        return float(item["score"])
    if key == "exact_match":
        return float(item["exact_match"])
    raise KeyError(key)


def load_spec(state: SweepState) -> TrialSpec:
    """The TrialSpec the sweep's trials ran with, read back from ``trial_spec.json``."""
    from sweeps.config import ConfigError

    try:
        return TrialSpec.from_record(json.loads(state.spec_path.read_text()))
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(
            f"sweep {state.name}: {state.spec_path} is missing or unreadable (made by an older "
            f"version?: {str(exc).splitlines()[0]}); re-run the sweep to promote or compare it"
        ) from None


REPORT_MAX_NEW_TOKENS = 256  # promote and compare show whole answers, the base model's too


def all_rows(spec: TrialSpec) -> TrialSpec:
    """The spec with generation on every held-out row, not just ``generation_samples``, and
    room for a whole answer: a rung's ``max_new_tokens`` is sized for speed, and cut the base
    model's rambling answers mid-sentence in the A/B report."""
    limit = max(spec.evaluation.max_new_tokens, REPORT_MAX_NEW_TOKENS)
    evaluation = spec.evaluation.model_copy(
        update={"generation_samples": None, "max_new_tokens": limit}
    )
    return spec.model_copy(update={"evaluation": evaluation, "benchmarks": None})


def adapter_digest(adapter: Path) -> str:
    """sha256 over the adapter's config and weights: the same weights give the same digest."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(name.encode())
        digest.update((adapter / name).read_bytes())
    return digest.hexdigest()


def data_digests(spec: TrialSpec) -> dict[str, str]:
    """sha256 of the data files as they are now (the held-out rows come from them)."""
    from trainers.data import file_digest

    paths = {"train": spec.data.train, "heldout": spec.data.heldout}
    return {role: file_digest(Path(path)) for role, path in paths.items() if path}


def heldout_cache_key(spec: TrialSpec, adapter: Path | None) -> str:
    """What a model's held-out scores depend on: the base model, the adapter's weights, the data
    files' contents, and every data and held-out setting (the spec's own sections, so a setting
    added to the schema is in the key without a word here). The one key of both caches: the
    base model's rung-sized scores (sweeps/driver/base_scores.py) and every row's (here)."""
    from trainers.models import model_identity

    key = {
        "model": model_identity(Path(spec.model_path)),
        "adapter": adapter_digest(adapter) if adapter is not None else "base",
        "data": data_digests(spec),
        "settings": spec.model_dump(
            mode="json", include={"data", "evaluation"}, exclude={"data": {"train", "heldout"}}
        ),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cache_path(spec: TrialSpec, adapter: Path | None) -> Path:
    """Where one model's item scores are cached, keyed by everything they depend on."""
    from trainers.models import cache_root

    return cache_root() / "heldout_items" / f"{heldout_cache_key(spec, adapter)}.json"


def store_scores(path: Path, scores: ItemScores) -> None:
    write_json_atomic(path, {"metrics": scores.metrics, "items": scores.items})


def score_every_row(
    spec: TrialSpec, models: Mapping[str, Path | None], *, progress: Say = print
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
    spec: TrialSpec, models: Mapping[str, Path | None], *, progress: Say
) -> dict[str, ItemScores]:
    from trainers.models import load_causal_lm
    from trainers.scorer import heldout_scorer

    scorer = heldout_scorer(spec)
    device = spec.device if _device_available(spec.device) else "cpu"
    model = load_causal_lm(
        Path(spec.model_path), trust_remote_code=spec.trust_remote_code, device=device
    )
    out = {}
    for label, adapter in models.items():
        progress(f"Scoring {label} on all {len(scorer.prompts)} held-out rows ...")
        if adapter is None:
            scores = scorer.score(model.eval())
        else:
            with_adapter = _with_adapter(model, adapter)
            scores = scorer.score(with_adapter.eval())
            _take_off(with_adapter)  # the bare base again (in place), for the next adapter
        items: list[ScoredRow] = [
            {"id": _item_id(i, item), **item} for i, item in enumerate(scores.items)
        ]
        out[label] = ItemScores(metrics=scores.as_metrics(), items=items)
    return out


def _device_available(device: str) -> bool:
    """A GPU sweep can be promoted or compared on a machine without one (on CPU)."""
    import torch

    return not device.startswith("cuda") or torch.cuda.is_available()


def _with_adapter(model: PreTrainedModel, adapter: Path) -> PeftModel:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter))


def _take_off(model: PeftModel) -> None:
    from peft.tuners.tuners_utils import BaseTuner

    tuner = model.base_model
    assert isinstance(tuner, BaseTuner)
    tuner.unload()


def _item_id(index: int, item: ScoredItem) -> str:
    """Row number plus a digest of its prompt and reference: ids match only on the same rows."""
    text = json.dumps([item["prompt"], item["reference"]])
    return f"{index:05d}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
