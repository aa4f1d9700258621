"""The one place where the YAML search space becomes Optuna distributions.

Nothing else knows the YAML's shape. ``define_by_run`` is what Ray's OptunaSearch calls per trial;
it returns the derived values (a fixed knob, or a ``ratio_of_r`` knob such as ``lora_alpha`` as a
ratio of ``lora_r``). Which knobs take ratios or target sets comes from the schema's ``Search``
markers (``RATIO_KNOBS``, ``TARGET_KNOBS``), never from a knob's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sweeps.config import (
    INTEGER_KNOBS,
    KNOBS,
    RATIO_KNOBS,
    TARGET_KNOBS,
    Choice,
    Hyperparameters,
    IntRange,
    LogUniform,
    RatioOfR,
    SearchSpace,
    Spec,
    SweepConfig,
    Uniform,
    ratio_name,
)
from trainers.targets import ALL_LINEAR, ATTENTION, join_targets, split_targets

if TYPE_CHECKING:
    import optuna

Value = float | str
RATIO_OF = "lora_r"  # a ratio_of_r knob's value is its sampled ratio times this knob's
HEAVIEST_HIGH = ("lora_r", "sequence_len", "micro_batch_size")  # the costlier the higher


def active_specs(config: SweepConfig) -> dict[str, Spec]:
    """Each hyperparameter's spec: from search_space, else the fixed value from training."""
    specs: dict[str, Spec] = {}
    for knob in KNOBS:
        spec = getattr(config.search_space, knob)
        if spec is None and knob in TARGET_KNOBS:
            spec = join_targets(getattr(config.training, knob))
        specs[knob] = getattr(config.training, knob) if spec is None else spec
    return specs


def sample(trial: optuna.Trial, specs: dict[str, Spec]) -> dict[str, Value]:
    """Suggest every searched knob on ``trial``; return the values that are fixed or derived."""
    derived: dict[str, Value] = {}
    for knob, spec in specs.items():
        if knob in RATIO_KNOBS:
            continue  # after the knob it is a ratio of
        value = _suggest(trial, knob, spec)
        if value is not None:
            derived[knob] = value
    r = float(trial.params.get(RATIO_OF, derived.get(RATIO_OF, 0)))
    for knob in RATIO_KNOBS:
        spec = specs[knob]
        if isinstance(spec, RatioOfR):
            ratio = trial.suggest_categorical(ratio_name(knob), list(spec.values))
            derived[knob] = float(ratio) * r
            continue
        value = _suggest(trial, knob, spec)
        if value is not None:
            derived[knob] = value
    return derived


def _suggest(trial: optuna.Trial, knob: str, spec: Spec) -> Value | None:
    """Suggest a searched knob (returns None), or return a fixed knob's value."""
    if isinstance(spec, LogUniform):
        trial.suggest_float(knob, spec.low, spec.high, log=True)
    elif isinstance(spec, Uniform):
        trial.suggest_float(knob, spec.low, spec.high)
    elif isinstance(spec, IntRange):
        trial.suggest_int(knob, spec.low, spec.high, step=spec.step)
    elif isinstance(spec, Choice):
        trial.suggest_categorical(knob, list(spec.values))
    elif isinstance(spec, (int, float)):
        return int(spec) if knob in INTEGER_KNOBS else spec
    elif isinstance(spec, str):
        return spec
    return None


class DefineByRun:
    """The define-by-run function Ray's OptunaSearch calls per trial (picklable: Ray saves it)."""

    def __init__(self, specs: dict[str, Spec]) -> None:
        self.specs = specs

    def __call__(self, trial: optuna.Trial) -> dict[str, Value]:
        return sample(trial, self.specs)


def define_by_run(config: SweepConfig) -> Callable[[optuna.Trial], dict[str, Value]]:
    return DefineByRun(active_specs(config))


def distributions(config: SweepConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distribution of every knob ``sample`` suggests, by the name it suggests it
    under (a ratio of r under :func:`ratio_name`): what a warm start's copied trials carry."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for knob, spec in active_specs(config).items():
        if isinstance(spec, LogUniform):
            out[knob] = FloatDistribution(spec.low, spec.high, log=True)
        elif isinstance(spec, Uniform):
            out[knob] = FloatDistribution(spec.low, spec.high)
        elif isinstance(spec, IntRange):
            out[knob] = IntDistribution(spec.low, spec.high, step=spec.step)
        elif isinstance(spec, Choice):
            out[knob] = CategoricalDistribution(list(spec.values))
        elif isinstance(spec, RatioOfR):
            out[ratio_name(knob)] = CategoricalDistribution(list(spec.values))
    return out


def fixed_values(config: SweepConfig) -> dict[str, Value]:
    """The knobs the config fixes, with their values (integer knobs as ints)."""
    out: dict[str, Value] = {}
    for knob, spec in active_specs(config).items():
        if isinstance(spec, str):
            out[knob] = spec
        elif isinstance(spec, (int, float)):
            out[knob] = int(spec) if knob in INTEGER_KNOBS else spec
    return out


def grid_values(config: SweepConfig) -> dict[str, list[Value]]:
    """The finite grid that GridSampler walks (validation has ruled out continuous ranges)."""
    grid: dict[str, list[Value]] = {}
    for knob, spec in active_specs(config).items():
        if isinstance(spec, Choice):
            grid[knob] = list(spec.values)
        elif isinstance(spec, IntRange):
            grid[knob] = list(range(spec.low, spec.high + 1, spec.step))
        elif isinstance(spec, RatioOfR):
            grid[ratio_name(knob)] = list(spec.values)
    return grid


def grid_size(config: SweepConfig) -> int:
    size = 1
    for values in grid_values(config).values():
        size *= len(values)
    return size


def candidate_values(config: SweepConfig, knob: str) -> list[float]:
    """The values a numeric knob can take, as far as a check needs them: choices, range ends, or
    the fixed one."""
    spec = active_specs(config)[knob]
    if isinstance(spec, str) or knob in TARGET_KNOBS:
        raise TypeError(f"{knob} is not numeric")
    if isinstance(spec, Choice):
        return sorted({float(v) for v in spec.values})
    if isinstance(spec, (IntRange, LogUniform, Uniform)):
        return [float(spec.low), float(spec.high)]
    if isinstance(spec, RatioOfR):
        return sorted(float(v) for v in spec.values)
    return [float(spec)]


def fixed_value(knob: str, spec: Spec, *, lora_r: float | None = None) -> Value | None:
    """A knob's value when the config leaves no choice (fixed, a single choice, or a ratio of a
    given r); None when it is searched."""
    if isinstance(spec, (int, float, str)):
        return spec
    if isinstance(spec, Choice) and len(spec.values) == 1:
        only: Value = spec.values[0]  # a number, or a target set
        return only
    if knob in RATIO_KNOBS and isinstance(spec, RatioOfR) and lora_r is not None:
        return float(spec.values[0]) * float(lora_r)
    return None


def max_epochs(space: SearchSpace) -> int:
    spec = space.num_epochs
    if isinstance(spec, IntRange):
        return int(spec.high)
    if isinstance(spec, Choice):
        return int(max(spec.values))
    if isinstance(spec, (int, float)):
        return int(spec)
    raise TypeError(f"num_epochs cannot be {spec!r}")


def describe(config: SweepConfig) -> dict[str, str]:
    """A one-line description of every hyperparameter's spec, for ``sweep validate``."""
    out = {}
    for knob, spec in active_specs(config).items():
        if isinstance(spec, (LogUniform, Uniform)):
            out[knob] = f"{spec.type}({spec.low:g}, {spec.high:g})"
        elif isinstance(spec, IntRange):
            out[knob] = f"int({spec.low}..{spec.high}, step {spec.step})"
        elif isinstance(spec, Choice):
            out[knob] = f"choice{list(spec.values)}"
        elif isinstance(spec, RatioOfR):
            out[knob] = f"lora_r x choice{list(spec.values)}"
        else:
            out[knob] = f"fixed {spec}"
    return out


def representative_hparams(config: SweepConfig) -> Hyperparameters:
    """The heaviest trial the space holds, for timing: the largest lora_r, sequence_len and
    micro-batch, all-linear targets when searched, one epoch, and every other knob at its low end
    (or its first choice)."""
    specs = active_specs(config)
    params: dict[str, Value] = {}
    for knob, spec in specs.items():
        if knob in TARGET_KNOBS:
            params[knob] = _heaviest_targets(spec)
        elif knob in RATIO_KNOBS and isinstance(spec, RatioOfR):
            continue  # from the chosen r, below
        elif knob in HEAVIEST_HIGH:
            params[knob] = int(max(candidate_values(config, knob)))
        elif knob == "num_epochs":
            params[knob] = 1
        elif isinstance(spec, Choice):
            params[knob] = spec.values[0]
        else:
            params[knob] = candidate_values(config, knob)[0]
    for knob in RATIO_KNOBS:
        spec = specs[knob]
        if isinstance(spec, RatioOfR):
            params[knob] = float(spec.values[0]) * float(params[RATIO_OF])
    return Hyperparameters.from_trial(params, training=config.training)


def _heaviest_targets(spec: Spec) -> str:
    """A searched target set's heaviest choice: all-linear if offered, then attention (four
    projections on most models), else the set naming the most modules."""
    if isinstance(spec, str):
        return spec
    choices = [str(v) for v in spec.values] if isinstance(spec, Choice) else []
    for preset in (ALL_LINEAR, ATTENTION):
        if preset in choices:
            return preset
    return max(choices, key=lambda v: len(split_targets(v)))
