"""The trial spec: everything a trial needs besides its hyperparameters (no torch here).

Its sections are the sweep config's own models (``trainers/config.py``, ``evals/config.py``), so each default lives
once, in the schema, and mypy follows a knob from the YAML to the trainer. ``sweeps/driver/preflight.py``
builds the spec; Ray hands it to every trial; promote and compare read it back from
``trial_spec.json``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from evals.benchmark_plan import BenchmarkPlan
from evals.config import HeldoutEval
from trainers.config import DataConfig, Hyperparameters, TrainingConfig


class TrialSpec(BaseModel):
    """The base model, the data (paths resolved, task metric decided), the training and held-out
    settings, where the trial runs, and the benchmark plan proxy-scored at the last rung."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_path: str
    data: DataConfig  # train/heldout are absolute paths; task_metric is never "auto"
    training: TrainingConfig = TrainingConfig()
    evaluation: HeldoutEval = HeldoutEval()
    trust_remote_code: bool = False
    device: str = "cpu"
    cpus: float = 1.0
    gpus: float = 0.0  # the GPUs (or fraction of one) the trial holds
    benchmarks: BenchmarkPlan | None = None

    @property
    def task_metric(self) -> str:
        """The held-out task metric (exact_match, field_f1 or rouge_l)."""
        if self.data.task_metric == "auto":
            raise ValueError("a trial spec needs a decided task metric, not 'auto'")
        return self.data.task_metric

    def with_searched(self, hparams: Hyperparameters) -> TrialSpec:
        """This spec with the training knobs a search may vary (micro-batch, accumulation, target
        modules, ...) set to the trial's values."""
        update = hparams.training_values()
        if all(getattr(self.training, k) == v for k, v in update.items()):
            return self
        training = TrainingConfig.model_validate({**self.training.model_dump(), **update})
        return self.model_copy(update={"training": training})

    def record(self) -> dict[str, object]:
        """The spec as JSON data, the benchmark plan left out: what promote and compare re-read."""
        return self.model_dump(mode="json", exclude={"benchmarks"})

    @classmethod
    def from_record(cls, record: object) -> TrialSpec:
        return cls.model_validate(record)
