"""The two sides of an A/B comparison, and their held-out outputs row by row.

``sweep compare``, ``sweep judge``, ``sweep human export`` and ``sweep errors`` all start here: a
reference (``base``, a registry alias or version, a sweep, ``SWEEP/TRIAL``, a trial's run id or
an adapter directory) resolves to a :class:`Side`; two sides share the held-out set of the sweep
one of them comes from (:func:`check_comparable`); :func:`paired_outputs` scores both on every
held-out row (``sweeps/serving/scoring.py``, cached) and pairs their outputs by row.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.serving.refs import parse_registry_ref, resolve_adapter
from sweeps.serving.scoring import ItemScores, adapter_digest, all_rows, load_spec, score_every_row
from sweeps.tracking.state import SweepState, TrialRecord, list_sweeps, load_state
from trainers.spec import TrialSpec

BASE = "base"
NO_ADAPTER = "base model (no adapter)"


@dataclass(frozen=True)
class RegistryVersion:
    """The registered model version a side was named by (``champion``, ``NAME@ALIAS``, ...)."""

    name: str
    version: str
    created: str  # when the version was registered, UTC
    aliases: list[str] = field(default_factory=list)

    def describe(self) -> str:
        aliases = f" (alias {', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.name} version {self.version}{aliases}, registered {self.created}"


@dataclass(frozen=True)
class Side:
    """One side of the comparison: an adapter from a sweep (or a directory), or the base."""

    ref: str
    label: str
    adapter: Path | None = None
    base_model: str = ""  # what the adapter records it was trained on
    state: SweepState | None = None
    record: TrialRecord | None = None
    config: dict[str, object] = field(default_factory=dict)  # its sweep's config.yaml
    registry: RegistryVersion | None = None


@dataclass(frozen=True)
class Turn:
    role: str  # system | user | assistant (| prompt: text no chat template could be read from)
    content: str


@dataclass(frozen=True)
class ItemRow:
    """One held-out row, both outputs in full; ``a_cut``: A's output reached the token limit."""

    id: str
    turns: list[Turn]
    reference: str
    a: str
    a_score: float
    b: str
    b_score: float
    delta: float
    a_cut: bool = False
    b_cut: bool = False
    group: str = ""  # lost | wrong | won | tied


# --------------------------------------------------------------------------- the two sides
def resolve_side(ref: str, *, state_dir: Path, mlflow_uri: str) -> Side:
    if ref == BASE:
        return Side(ref, "base model")
    adapter = resolve_adapter(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
    label = adapter.describe() if ref == adapter.describe() else f"{ref} ({adapter.describe()})"
    registry = registry_version(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
    if not adapter.sweep or adapter.sweep not in list_sweeps(state_dir):
        return Side(ref, label, adapter.path, adapter.base_model, registry=registry)
    state = load_state(adapter.sweep, state_dir=state_dir)
    config = yaml.safe_load((state.path / "config.yaml").read_text())
    record = state.trials.get(adapter.trial_id)
    if record is not None and record.number is not None:  # the number the study's pictures show
        label = (
            f"{label[:-1]}, trial #{record.number})"
            if label.endswith(")")
            else (f"{label} (trial #{record.number})")
        )
    return Side(ref, label, adapter.path, adapter.base_model, state, record, config, registry)


def registry_version(ref: str, *, state_dir: Path, mlflow_uri: str) -> RegistryVersion | None:
    """The registered version ``ref`` names, with its date; None when ``ref`` resolved to a
    directory or a sweep instead (``sweeps/serving/refs.py`` tries those first)."""
    parsed = parse_registry_ref(ref)
    if parsed is None or Path(ref).expanduser().exists():
        return None
    if ref.partition("/")[0] in list_sweeps(state_dir):
        return None
    from sweeps.tracking.mlflow_facade import ModelRegistry

    registry = ModelRegistry(mlflow_uri)
    name, kind, value = parsed
    names = [name] if name else registry.models_with_alias(value)
    if len(names) != 1:
        return None
    found = (
        registry.by_alias(names[0], value) if kind == "alias" else registry.version(names[0], value)
    )
    if found is None:
        return None
    created = registry.client.get_model_version(names[0], found["version"]).creation_timestamp
    return RegistryVersion(
        names[0], found["version"], utc(created / 1000 if created else None), list(found["aliases"])
    )


def check_comparable(a: Side, b: Side) -> SweepState:
    """The sweep whose held-out set both are scored on; both sides must share its base model."""
    home = a.state or b.state
    if home is None:
        raise ConfigError(
            f"{a.ref} and {b.ref}: at least one side must come from a sweep (its held-out set, "
            "base model and settings are what the two are compared on)"
        )
    for side in (a, b):
        if side.state is not None and side.state.base_model_digest != home.base_model_digest:
            raise ConfigError(
                f"{side.ref} was trained on another base model ({side.state.base_model}) than "
                f"{home.name} ({home.base_model}): the two cannot be compared on one base"
            )
    return home


def check_same_base(side: Side, *, home: SweepState, model_path: str) -> None:
    """An adapter from outside the sweep must have been trained on the sweep's base model."""
    if side.adapter is None or side.state is not None:
        return
    record = side.adapter.parent / "base_model.json"  # a registry version's record of its base
    if record.is_file():
        same = json.loads(record.read_text()).get("sha256") == home.base_model_digest
    else:
        names = (home.base_model, model_path)
        same = side.base_model in names or Path(side.base_model).resolve() == Path(model_path)
    if not same:
        raise ConfigError(
            f"{side.ref}: the adapter was trained on {side.base_model}, not on the base model of "
            f"sweep {home.name} ({home.base_model}); compare adapters of one base model"
        )


def slug(ref: str) -> str:
    """A file-name-safe form of a reference (no separators, no ``..``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", ref).strip("_")[:60] or "x"


def utc(seconds: float | None) -> str:
    """A timestamp as ``2026-11-29 09:14 UTC`` (now when None)."""
    when = (
        datetime.now(timezone.utc)
        if seconds is None
        else datetime.fromtimestamp(seconds, tz=timezone.utc)
    )
    return when.strftime("%Y-%m-%d %H:%M UTC")


def item_rows(
    scores: tuple[ItemScores, ItemScores],
    *,
    cut: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
) -> list[ItemRow]:
    """Every row scored for both sides (by id), in A's order, with its group."""
    theirs = {item["id"]: item for item in scores[1].items}
    rows = []
    for ia in scores[0].items:
        ib = theirs.get(ia["id"])
        if ib is None:
            continue
        sa, sb = float(ia["score"]), float(ib["score"])
        group = "lost" if sa < sb else "wrong" if sa < 1 else "won" if sa > sb else "tied"
        rows.append(
            ItemRow(
                id=ia["id"],
                turns=conversation(ia["prompt"]),
                reference=ia["reference"],
                a=ia["prediction"],
                a_score=sa,
                b=ib["prediction"],
                b_score=sb,
                delta=sa - sb,
                a_cut=ia["id"] in cut[0],
                b_cut=ia["id"] in cut[1],
                group=group,
            )
        )
    return rows


# Chat templates' turn markup: ChatML (SmolLM2, Qwen), Llama 3, Gemma, Phi-3 / Zephyr.
CHAT_TURNS = tuple(
    re.compile(p, re.S)
    for p in (
        r"<\|im_start\|>(\w+)\n?(.*?)(?:<\|im_end\|>|(?=<\|im_start\|>)|\Z)",
        r"<\|start_header_id\|>(\w+)<\|end_header_id\|>(.*?)(?:<\|eot_id\|>|(?=<\|start_header_id\|>)|\Z)",
        r"<start_of_turn>(\w+)\n?(.*?)(?:<end_of_turn>|(?=<start_of_turn>)|\Z)",
        r"<\|(system|user|assistant)\|>(.*?)(?:<\|end\|>|</s>|(?=<\|(?:system|user|assistant)\|>)|\Z)",
    )
)
ALPACA_USER, ALPACA_RESPONSE = "### Instruction:\n", "\n\n### Response:\n"  # trainers/tokenize.py
SPECIAL_TOKENS = re.compile(r"<\|[^|<>\s]*\|>|</?s>|<(?:start|end)_of_turn>|<bos>|<eos>")
ROLES = {"model": "assistant", "human": "user", "gpt": "assistant"}


def conversation(prompt: str) -> list[Turn]:
    """The prompt's turns (system, user, assistant) read back from its chat-template text,
    without the template's tokens; the empty assistant turn it ends on is left out."""
    turns: list[Turn] = []
    for pattern in CHAT_TURNS:
        turns = [Turn(ROLES.get(r, r), _plain(c)) for r, c in pattern.findall(prompt)]
        if turns:
            break
    if not turns and ALPACA_USER in prompt:
        head, *exchanges = prompt.split(ALPACA_USER)
        turns = [Turn("system", _plain(head))] if _plain(head) else []
        for exchange in exchanges:
            user, _, answer = exchange.partition(ALPACA_RESPONSE)
            turns += [Turn("user", _plain(user)), Turn("assistant", _plain(answer))]
    if not turns:
        return [Turn("prompt", _plain(prompt))]
    return turns[:-1] if turns[-1].role == "assistant" and not turns[-1].content else turns


def turns_text(turns: list[Turn]) -> str:
    """The prompt's turns as readable text, ``system: ...`` then ``user: ...`` (a prompt no
    template could be read from as it is): what the judge and human raters are shown."""
    return "\n\n".join(t.content if t.role == "prompt" else f"{t.role}: {t.content}" for t in turns)


def _plain(text: str) -> str:
    return SPECIAL_TOKENS.sub("", text).strip()


def experiment_name(home: SweepState) -> str:
    """The sweep's MLflow experiment, where compare, judge and human runs are logged."""
    config = home_config(home)
    name = (config.get("tracking") or {}).get("experiment") or config.get("name") or home.name
    return str(name)


def home_config(state: SweepState) -> dict[str, Any]:
    """The sweep's config.yaml as read (its readers look sections up with ``.get``)."""
    loaded: dict[str, Any] = yaml.safe_load((state.path / "config.yaml").read_text())
    return loaded


# --------------------------------------------------------------------------- both sides' outputs
@dataclass(frozen=True)
class PairedOutputs:
    """Two sides scored on every held-out row of ``home``, paired by row (``items``)."""

    a: Side
    b: Side
    home: SweepState
    spec: TrialSpec
    scores: tuple[ItemScores, ItemScores]
    items: list[ItemRow]
    max_new_tokens: int = 0  # the limit every output was generated to (a_cut/b_cut: reached)

    @property
    def key(self) -> str:
        """What evidence about this pair is stored under: both sides' weights, in order."""
        return pair_key(self.a, self.b)


def paired_outputs(
    a: str, b: str, *, state_dir: Path, mlflow_uri: str, progress: Say = print
) -> PairedOutputs:
    """Resolve A and B, check they can be compared, and score both on every held-out row."""
    side_a, side_b = (resolve_side(r, state_dir=state_dir, mlflow_uri=mlflow_uri) for r in (a, b))
    home = check_comparable(side_a, side_b)
    spec = load_spec(home)
    for side in (side_a, side_b):
        check_same_base(side, home=home, model_path=spec.model_path)
    if side_a.adapter is not None and side_a.adapter == side_b.adapter:
        raise ConfigError(f"{a} and {b} are the same adapter ({side_a.adapter})")
    if side_a.adapter is None and side_b.adapter is None:
        raise ConfigError(f"{a} and {b} are both the base model")
    scores = score_every_row(
        spec, {side_a.label: side_a.adapter, side_b.label: side_b.adapter}, progress=progress
    )
    pair = (scores[side_a.label], scores[side_b.label])
    limit = all_rows(spec).evaluation.max_new_tokens  # what scoring used
    cut = cut_outputs(spec, pair, limit=limit)
    return PairedOutputs(side_a, side_b, home, spec, pair, item_rows(pair, cut=cut), limit)


def cut_outputs(
    spec: TrialSpec, scores: tuple[ItemScores, ItemScores], *, limit: int
) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of the rows whose output reached ``max_new_tokens`` (cut there), per side."""
    if not Path(spec.model_path).is_dir():
        return frozenset(), frozenset()
    from trainers.models import load_tokenizer

    tokenizer = load_tokenizer(Path(spec.model_path), trust_remote_code=spec.trust_remote_code)

    def cut(side: ItemScores) -> frozenset[str]:
        texts = [str(item["prediction"]) for item in side.items]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        return frozenset(i["id"] for i, t in zip(side.items, ids, strict=True) if len(t) >= limit)

    return cut(scores[0]), cut(scores[1])


def side_digest(side: Side) -> str:
    """The side's adapter weights (sha256), or ``base``."""
    return "base" if side.adapter is None else adapter_digest(side.adapter)


def pair_key(a: Side, b: Side) -> str:
    """A file-name-safe key of the ordered pair (A, B) by their weights, not their names: the
    champion and the trial it was promoted from are the same side."""
    text = f"{side_digest(a)}:{side_digest(b)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]
