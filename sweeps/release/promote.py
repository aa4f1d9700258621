"""``sweep promote SWEEP|RUN``: register the winner in the MLflow Model Registry, gated by evidence.

1. **Check** (nothing scored, nothing written yet): the candidate is a sweep's trial with a saved
   adapter. Its base model resolves, and the weights' sha256 equals the one recorded when the
   sweep ran. The data files are the ones the sweep ran on. A champion, if there is one, was
   trained on the same base.
2. **Score** the candidate and the incumbent (the champion, else the base model) on every
   held-out row, not just the rows a rung generates (``sweeps/serving/scoring.py``, cached).
3. **Gate** (``evals/gate.py``): a paired test must find the candidate better, and no guard
   benchmark may have regressed beyond its margin. ``promote.require`` (or ``--require``) may
   add the LLM judge (asked here, cached) and imported human ratings: each must prefer the
   candidate significantly. ``--force REASON`` overrides; the reason is recorded as a tag.
4. **Register** a model version holding the adapter, the tokenizer (chat template included), the
   base model's reference and hash, and the eval summary with per-item scores. Alias
   ``champion`` moves to it, and the old champion becomes ``previous``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evals.gate import GateDecision, promotion_gate
from evals.objective import guard_violations
from sweeps.config import ConfigError, SweepConfig, check_safe_name, config_from_dict
from sweeps.console import Say
from sweeps.serving.refs import resolve_adapter
from sweeps.serving.scoring import ItemScores, adapter_digest, load_spec, score_every_row
from sweeps.tracking.provenance import hide_uri_password
from sweeps.tracking.state import SweepState, TrialRecord, load_state
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from evals.preference import PreferenceSummary
    from sweeps.ab.judge import Asker, JudgeSettings
    from sweeps.config import JudgeConfig
    from sweeps.tracking.mlflow_facade import ModelRegistry
    from sweeps.tracking.run_records import VersionInfo

    JudgeFor = Callable[[JudgeConfig | None], JudgeSettings]

CHAMPION, PREVIOUS = "champion", "previous"
REGISTERED_PATH = "registered_model"  # where a promoted version's files live on the trial's run


@dataclass(frozen=True)
class Candidate:
    """A sweep's trial, with what promotion checks and scores it by."""

    state: SweepState
    record: TrialRecord
    adapter: Path
    spec: TrialSpec
    config: SweepConfig  # the resolved config the sweep ran with

    @property
    def label(self) -> str:
        return f"{self.state.name}/{self.record.trial_id}"


@dataclass(frozen=True)
class Promotion:
    decision: GateDecision
    model_name: str
    version: str | None = None  # None: refused
    previous: str | None = None  # the version that was champion before


def promote(
    ref: str,
    *,
    state_dir: Path,
    model_name: str | None = None,
    mlflow_uri: str | None = None,
    force_reason: str | None = None,
    progress: Say = print,
    require: Sequence[str] = (),
    judge_for: JudgeFor | None = None,
) -> Promotion:
    """Check, score, gate and (when the gate passes or is forced) register ``ref``.
    ``require``: the evidence the gate needs (default: the sweep YAML's promote.require);
    ``judge_for``: the judge, from the sweep YAML's judge: section (with the flags on top)."""
    if force_reason is not None and not force_reason.strip():
        raise ConfigError("--force needs a reason (it is recorded on the model version)")
    candidate = load_candidate(ref, state_dir=state_dir)
    check_inputs(candidate, progress=progress)
    needed = list(require or candidate.config.promote.require)
    uri = mlflow_uri or candidate.state.mlflow_uri
    judging = None
    if "judge" in needed:  # resolved and checked before anything is scored: one line if wrong
        judging = made_judge(candidate, judge_for, state_dir=state_dir, mlflow_uri=uri)
    from sweeps.tracking.mlflow_facade import ModelRegistry

    registry = ModelRegistry(uri)
    name = check_safe_name(model_name or candidate.config.name, what="registered model name")
    champion = registry.by_alias(name, CHAMPION)
    incumbent_ref, against, incumbent = incumbent_of(
        champion, candidate, name=name, state_dir=state_dir, mlflow_uri=registry.tracking_uri
    )
    models = {candidate.label: candidate.adapter, against: incumbent}
    scores = score_every_row(candidate.spec, models, progress=progress)
    preferences = gather_preferences(
        candidate,
        incumbent_ref,
        require=needed,
        state_dir=state_dir,
        mlflow_uri=registry.tracking_uri,
        judging=judging,
        progress=progress,
    )
    decision = gate_decision(
        candidate,
        scores[candidate.label],
        scores[against],
        against=against,
        force_reason=force_reason,
        require=needed,
        preferences=preferences,
    )
    if not decision.promote:
        return Promotion(decision, name)
    version = register(
        registry, candidate, decision, scores=(scores[candidate.label], scores[against]), name=name
    )
    if champion is not None:
        registry.set_alias(name, PREVIOUS, champion["version"])
    registry.set_alias(name, CHAMPION, version)
    return Promotion(decision, name, version, champion["version"] if champion else None)


def incumbent_of(
    champion: VersionInfo | None,
    candidate: Candidate,
    *,
    name: str,
    state_dir: Path,
    mlflow_uri: str,
) -> tuple[str, str, Path | None]:
    """What the candidate must beat: the champion's ref, its label and its adapter, checked to
    share the candidate's base; else the base model (``base``, no adapter)."""
    if champion is None:
        return "base", "the base model", None
    check_champion(champion, candidate, name=name)
    ref = f"models:/{name}/{champion['version']}"
    adapter = resolve_adapter(ref, state_dir=state_dir, mlflow_uri=mlflow_uri).path
    return ref, f"champion {name} v{champion['version']}", adapter


def made_judge(
    candidate: Candidate, judge_for: JudgeFor | None, *, state_dir: Path, mlflow_uri: str
) -> tuple[JudgeSettings, Asker]:
    """The judge the gate asks: the sweep YAML's judge: section (``judge_for`` puts the flags on
    top), checked (an endpoint answers, a local model loads)."""
    from sweeps.ab.judge import judge_settings, make_asker

    settings = (judge_for or judge_settings)(candidate.config.judge)
    return settings, make_asker(settings, state_dir=state_dir, mlflow_uri=mlflow_uri)


# --------------------------------------------------------------------------- 1. checks
def load_candidate(ref: str, *, state_dir: Path) -> Candidate:
    """A sweep's trial (``SWEEP`` for its best, ``SWEEP/TRIAL``, or the trial's run id)."""
    import yaml

    adapter = resolve_adapter(ref, state_dir=state_dir)
    if not adapter.sweep:
        raise ConfigError(
            f"{ref}: promote takes a sweep's trial (SWEEP, SWEEP/TRIAL or its run id), whose "
            "held-out set and base model the evidence is computed on; not a bare directory"
        )
    state = load_state(adapter.sweep, state_dir=state_dir)
    check_on_the_front(state, adapter.trial_id)
    config = config_from_dict(
        yaml.safe_load((state.path / "config.yaml").read_text()),
        source=str(state.path / "config.yaml"),
    )
    return Candidate(state, state.trials[adapter.trial_id], adapter.path, load_spec(state), config)


def check_on_the_front(state: SweepState, trial_id: str) -> None:
    """A multi-objective sweep promotes a trial of its Pareto front: one off it is worse than a
    front trial on every objective."""
    if not state.multi_objective:
        return
    front = state.front()
    if trial_id in {t.trial_id for t in front}:
        return
    names = ", ".join(t.trial_id for t in front) or "none yet"
    raise ConfigError(
        f"{state.name}/{trial_id} is not on the Pareto front of "
        f"{' and '.join(g.metric for g in state.goals)} (another trial is as good or better on "
        f"every objective); promote one of the front: {names}"
    )


def check_inputs(candidate: Candidate, *, progress: Say) -> None:
    """Refuse an adapter whose base cannot be resolved or whose hash differs, or changed data."""
    from trainers.data import file_digest
    from trainers.models import ModelError, model_digest, resolve_base_model

    state = candidate.state
    if not state.base_model_digest:
        raise ConfigError(f"sweep {state.name}: no base model hash was recorded; re-run it")
    try:
        base = resolve_base_model(state.base_model, progress=progress)
    except ModelError as exc:
        raise ConfigError(f"{candidate.label}: its base model cannot be resolved: {exc}") from None
    found = model_digest(base.path)
    if found != state.base_model_digest:
        raise ConfigError(
            f"{candidate.label}: base model {state.base_model} ({base.path}) has sha256 "
            f"{found[:12]}..., but the adapter was trained on {state.base_model_digest[:12]}..."
        )
    paths = {"train": candidate.spec.data.train, "heldout": candidate.spec.data.heldout}
    for role, recorded in state.digests.items():
        path = Path(paths.get(role) or "")
        if not path.is_file() or file_digest(path) != recorded:
            raise ConfigError(f"{candidate.label}: the {role} data {path} changed since the sweep")


def check_champion(champion: VersionInfo, candidate: Candidate, *, name: str) -> None:
    """The champion must share the candidate's base model, and must not be the candidate."""
    tags = champion["tags"]
    if tags.get("base_model.sha256") != candidate.state.base_model_digest:
        raise ConfigError(
            f"champion {name} v{champion['version']} was trained on another base model "
            f"({tags.get('base_model', '?')}); promote under another --model-name"
        )
    if tags.get("adapter.sha256") == adapter_digest(candidate.adapter):
        raise ConfigError(f"{candidate.label} is already champion {name} v{champion['version']}")


# --------------------------------------------------------------------------- 2-3. gate
def gather_preferences(
    candidate: Candidate,
    incumbent_ref: str,
    *,
    require: Sequence[str],
    state_dir: Path,
    mlflow_uri: str,
    judging: tuple[JudgeSettings, Asker] | None,
    progress: Say,
) -> dict[str, PreferenceSummary | str]:
    """The judge's verdicts (asked now, cached) and the stored human ratings on the candidate
    against the incumbent, as ``require`` asks; a missing one is the line saying how to get it."""
    if not {"judge", "human"} & set(require):
        return {}
    from sweeps.ab.evidence import load_evidence
    from sweeps.ab.judge_pairs import judge_paired
    from sweeps.serving.sides import paired_outputs

    pair = paired_outputs(
        candidate.label,
        incumbent_ref,
        state_dir=state_dir,
        mlflow_uri=mlflow_uri,
        progress=progress,
    )
    found: dict[str, PreferenceSummary | str] = {}
    if "judge" in require and judging is not None:
        settings, asker = judging
        judged = judge_paired(
            pair, mlflow_uri=mlflow_uri, settings=settings, asker=asker, progress=progress
        )
        found["judge"] = judged.summary
    if "human" in require:
        human = load_evidence(pair.home, pair.a, pair.b, "human")
        found["human"] = (
            human.summary()
            if human is not None
            else (
                f"no human ratings of {candidate.label} against {incumbent_ref}: sweep human export "
                f"{candidate.label} {incumbent_ref} --out DIR, have it rated, then sweep human "
                "import DIR"
            )
        )
    return found


def gate_decision(
    candidate: Candidate,
    ours: ItemScores,
    theirs: ItemScores,
    *,
    against: str,
    force_reason: str | None,
    require: Sequence[str] = ("heldout",),
    preferences: dict[str, PreferenceSummary | str] | None = None,
) -> GateDecision:
    """The gate on per-item task-metric scores, with the sweep's guard verdicts."""
    if not ours.items:
        raise ConfigError(
            f"{candidate.label}: no held-out row is generated (plain-text data), so there are "
            "no per-item scores to test; promotion needs prompt/response held-out rows"
        )
    margins = candidate.config.objective.guard
    guard = list(candidate.record.guard) or guard_violations(candidate.record.metrics, margins)
    return promotion_gate(
        ours.by_item(),
        theirs.by_item(),
        metric=candidate.spec.task_metric,
        against=against,
        guard=guard,
        force_reason=force_reason,
        require=require,
        preferences=preferences or {},
    )


# --------------------------------------------------------------------------- 4. register
def register(
    registry: ModelRegistry,
    candidate: Candidate,
    decision: GateDecision,
    *,
    scores: tuple[ItemScores, ItemScores],
    name: str,
) -> str:
    """Write the version's files, register them, and tag the trial's run."""
    with tempfile.TemporaryDirectory(prefix="lora-sweep-register-") as tmp:
        files = Path(tmp)
        write_version_files(files, candidate, decision, scores=scores)
        tags = version_tags(candidate, decision)
        version: str = registry.register(
            name,
            run_id=candidate.record.run_id,
            files=files,
            artifact_path=REGISTERED_PATH,
            tags=tags,
            description=decision.evidence(),
        )
    return version


def write_version_files(
    directory: Path,
    candidate: Candidate,
    decision: GateDecision,
    *,
    scores: tuple[ItemScores, ItemScores],
) -> None:
    """adapter/, tokenizer/ (with its chat template), base_model.json, eval_summary.json,
    heldout_items.jsonl and a README saying how to load it."""
    from trainers.models import load_tokenizer

    spec, state = candidate.spec, candidate.state
    shutil.copytree(candidate.adapter, directory / "adapter")
    load_tokenizer(Path(spec.model_path), trust_remote_code=spec.trust_remote_code).save_pretrained(
        directory / "tokenizer"
    )
    base = {"name": state.base_model, "path": spec.model_path, "sha256": state.base_model_digest}
    (directory / "base_model.json").write_text(json.dumps(base, indent=2))
    (directory / "eval_summary.json").write_text(
        json.dumps(eval_summary(candidate, decision, scores=scores), indent=2)
    )
    ours, theirs = scores
    rows = [
        {
            "id": a["id"],
            "prompt": a["prompt"],
            "reference": a["reference"],
            "candidate": a["prediction"],
            "candidate_score": a["score"],
            "incumbent": b["prediction"],
            "incumbent_score": b["score"],
        }
        for a, b in zip(ours.items, theirs.items, strict=True)
    ]
    (directory / "heldout_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "README.md").write_text(
        VERSION_README.format(base=state.base_model, mlflow_uri=hide_uri_password(state.mlflow_uri))
    )


def eval_summary(
    candidate: Candidate, decision: GateDecision, *, scores: tuple[ItemScores, ItemScores]
) -> dict[str, object]:
    record = candidate.record
    return {
        "sweep": candidate.state.name,
        "trial_id": record.trial_id,
        "run_id": record.run_id,
        "params": record.params,
        "metric": decision.metric,
        "against": decision.against,
        "heldout_all_rows": {"candidate": scores[0].metrics, "incumbent": scores[1].metrics},
        "paired": decision.comparison.to_json(),
        "evidence": decision.evidence(),
        "refusals": decision.refusals,
        "forced_reason": decision.forced_reason,
        "require": decision.require,
        "carried_by": decision.carried_by,
        "preferences": {k: v.to_json() for k, v in decision.preferences.items()},
        "guard": list(record.guard),
        "trial_metrics": record.metrics,
    }


def version_tags(candidate: Candidate, decision: GateDecision) -> dict[str, str]:
    c = decision.comparison
    tags = {
        "lora_sweep.sweep": candidate.state.name,
        "lora_sweep.trial_id": candidate.record.trial_id,
        "base_model": candidate.state.base_model,
        "base_model.sha256": candidate.state.base_model_digest,
        "adapter.sha256": adapter_digest(candidate.adapter),
        "adapter.path": str(candidate.adapter),
        "gate.metric": decision.metric,
        "gate.against": decision.against,
        "gate.test": c.test,
        "gate.n": str(c.n),
        "gate.delta": f"{c.delta:.6g}",
        "gate.ci_low": f"{c.ci_low:.6g}",
        "gate.ci_high": f"{c.ci_high:.6g}",
        "gate.passed": str(not decision.refusals).lower(),
        "promotion.forced": str(decision.forced_reason is not None).lower(),
    }
    if c.p_value is not None:
        tags["gate.p_value"] = f"{c.p_value:.6g}"
    tags["gate.require"] = ",".join(decision.require)
    tags["gate.carried_by"] = ",".join(decision.carried_by) or "none (forced)"
    for kind, summary in decision.preferences.items():
        tags[f"gate.{kind}"] = summary.describe()
    if decision.forced_reason is not None:
        tags["promotion.reason"] = decision.forced_reason
        tags["promotion.overrode"] = "; ".join(decision.refusals) or "nothing"
    return tags


VERSION_README = """\
# A LoRA adapter promoted by `sweep promote`

- `adapter/`: the PEFT adapter; `tokenizer/`: the tokenizer with its chat template.
- `base_model.json`: the base model ({base}) and the sha256 of its weights.
- `eval_summary.json`: the gate's evidence (paired test on every held-out row) and the trial's
  metrics; `heldout_items.jsonl`: each row's output and score, next to the incumbent's.

Load it:

```python
import json, mlflow
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

mlflow.set_tracking_uri("{mlflow_uri}")  # the store the sweep logged to
path = mlflow.artifacts.download_artifacts("models:/NAME@champion")
base = json.load(open(f"{{path}}/base_model.json"))["path"]
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), f"{{path}}/adapter")
tokenizer = AutoTokenizer.from_pretrained(f"{{path}}/tokenizer")
```

or merge it into a plain model directory: `sweep export champion --merged DIR`.
"""
