"""Task metrics on generated text: exact match, JSON field-F1 and ROUGE-L (no torch here)."""

from __future__ import annotations

import json
from collections.abc import Callable


def normalize_text(text: str) -> str:
    return " ".join(text.strip().split())


def parse_json_object(text: str) -> dict[str, object] | None:
    """The first JSON object in ``text`` (models often wrap it in prose or code fences)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return value if isinstance(value, dict) else None
    return None


def _canonical(value: object) -> str:
    """Strings compare case- and whitespace-insensitively; other JSON types by value and type."""
    if isinstance(value, str):
        return "str:" + normalize_text(value).lower()
    return json.dumps(value, sort_keys=True)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the texts match after whitespace normalisation (JSON: when the objects are equal)."""
    ref_obj = parse_json_object(reference) if reference.lstrip().startswith("{") else None
    if ref_obj is not None:
        pred_obj = parse_json_object(prediction)
        return float(pred_obj is not None and field_pairs(pred_obj) == field_pairs(ref_obj))
    return float(normalize_text(prediction) == normalize_text(reference))


def field_pairs(obj: dict[str, object]) -> set[tuple[str, str]]:
    """A JSON object's (key, value) pairs as field-F1 compares them (``sweep errors`` too)."""
    return {(str(k).strip().lower(), _canonical(v)) for k, v in obj.items()}


def field_f1(prediction: str, reference: str) -> float:
    """F1 over (key, value) pairs of the predicted and reference JSON objects."""
    ref_obj = parse_json_object(reference)
    if ref_obj is None:
        raise ValueError(f"field_f1 needs JSON-object references, got {reference[:60]!r}")
    pred_obj = parse_json_object(prediction)
    if not pred_obj:
        return 0.0
    predicted, expected = field_pairs(pred_obj), field_pairs(ref_obj)
    correct = len(predicted & expected)
    if correct == 0:
        return 0.0
    precision, recall = correct / len(predicted), correct / len(expected)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return float(scorer.score(reference, prediction)["rougeL"].fmeasure)


METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "field_f1": field_f1,
    "rouge_l": rouge_l,
}


def score_items(predictions: list[str], references: list[str], metric: str) -> list[float]:
    """Per-item scores: the raw material for means now and paired tests later."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    return [METRICS[metric](p, r) for p, r in zip(predictions, references, strict=True)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
