"""``search.warm_start: SWEEP``: a new sweep's study starts with a prior sweep's finished trials.

The prior sweep's COMPLETE and PRUNED study trials (with their rung values) are copied into the
new study with Optuna's own ``Study.add_trials``, so TPE, GP and the other samplers fit them
before the first new trial. A trial is carried over only where it fits the new space: every knob
the new sweep searches has a value inside the new range or choices, and every knob the new sweep
fixes had that same value. What does not fit is named in one line. Each copy carries the
``warm_start_from`` user attribute (``<prior sweep>#<trial number>``), so adding again (a resumed
driver) adds nothing twice. No ray here: preflight checks the prior sweep before any compute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.config import RATIO_KNOBS, ConfigError, SweepConfig, load_config, ratio_name
from sweeps.console import Say
from sweeps.search.pareto import RUNG_VALUES, Goal
from sweeps.search.space import RATIO_OF, Value, distributions, fixed_values
from sweeps.tune.compat import in_distribution

if TYPE_CHECKING:
    import optuna

ORIGIN = "warm_start_from"
RATIOS = {ratio_name(knob): knob for knob in RATIO_KNOBS}  # lora_alpha_ratio -> lora_alpha


@dataclass(frozen=True)
class Carried:
    """What a prior sweep gives a new one: the trials that fit, and why the others do not."""

    prior: str
    trials: list[optuna.trial.FrozenTrial]
    skipped: Counter[str]  # a reason (one per knob and kind of misfit) -> trials it stopped
    finished: int  # the prior study's COMPLETE and PRUNED trials

    def describe(self) -> str:
        line = (
            f"Warm start from {self.prior}: {len(self.trials)} of its {self.finished} "
            "finished trials carried over"
        )
        if not self.skipped:
            return line
        reasons = "; ".join(f"{reason} ({count})" for reason, count in self.skipped.most_common())
        return f"{line}; skipped: {reasons}"


def resolve_prior(config: SweepConfig, *, state_dir: Path) -> SweepConfig:
    """The config with search.warm_start as an absolute directory: a bare sweep name is looked
    up in ``state_dir`` (where this sweep goes), a path is taken from the working directory."""
    name = config.search.warm_start
    if name is None:
        return config
    path = Path(name) if ("/" in name or name.startswith(".")) else state_dir / name
    search = config.search.model_copy(update={"warm_start": str(path.resolve())})
    return config.model_copy(update={"search": search})


def seed_study(
    config: SweepConfig, *, study_name: str, storage: str, goals: Sequence[Goal], say: Say
) -> int:
    """Create (or open) the sweep's study and add the prior sweep's carried trials it lacks;
    the searcher then opens this study (Ray's OptunaSearch loads an existing one)."""
    import optuna

    if config.search.warm_start is None:
        return 0
    carried = carried_trials(config, prior_dir=Path(config.search.warm_start), goals=goals)
    directions = [
        optuna.study.StudyDirection.MAXIMIZE
        if g.mode == "max"
        else optuna.study.StudyDirection.MINIMIZE
        for g in goals
    ]
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=directions, load_if_exists=True
    )
    return add_carried(study, carried, say=say)


def carried_trials(config: SweepConfig, *, prior_dir: Path, goals: Sequence[Goal]) -> Carried:
    """The prior sweep's finished trials that fit ``config``'s space, as new-study trials."""
    import optuna

    from sweeps.tracking.state import RELAUNCH_CONFIG, load_state, study_storage

    if not (prior_dir / RELAUNCH_CONFIG).is_file():
        raise ConfigError(
            f"search.warm_start: no sweep at {prior_dir}; name a sweep in "
            "tracking.state_dir (sweep status lists them) or give its directory"
        )
    prior_state = load_state(prior_dir.name, state_dir=prior_dir.parent)
    if list(prior_state.goals) != list(goals):
        raise ConfigError(
            f"search.warm_start: {prior_dir.name} optimised {_named(prior_state.goals)}, this "
            f"sweep {_named(goals)}; its values would mislead the sampler: warm-start from a sweep "
            "with the same objective"
        )
    prior_config = load_config(prior_dir / RELAUNCH_CONFIG)
    check_same_setting(prior_config, config, prior=prior_dir.name)
    prior = optuna.load_study(
        study_name=prior_dir.name, storage=study_storage(prior_config, prior_dir)
    )
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = prior.get_trials(deepcopy=False, states=states)
    space, fixed = distributions(config), fixed_values(config)
    kept, skipped = [], Counter[str]()
    prior_fixed = fixed_values(prior_config)
    for trial in finished:
        params = {**prior_fixed, **trial.params}  # what the trial ran with
        reason = misfit(params, space=space, fixed=fixed)
        if reason:
            skipped[reason] += 1
            continue
        kept.append(copied(trial, space, origin=f"{prior_dir.name}#{trial.number}"))
    return Carried(prior_dir.name, kept, skipped, len(finished))


def _named(goals: Sequence[Goal]) -> str:
    """``heldout/field_f1``, or ``heldout/field_f1 (max) and cost/device_seconds (min)``."""
    if len(goals) == 1:
        return goals[0].metric
    return " and ".join(f"{g.metric} ({g.mode})" for g in goals)


def check_same_setting(earlier: SweepConfig, config: SweepConfig, *, prior: str) -> None:
    """A warm start needs the same base model and the same rungs (evals_per_epoch): values from
    another model, or from other points of training, would mislead the sampler."""
    for what, before, now in (
        ("base_model", earlier.base_model, config.base_model),
        (
            "training.evals_per_epoch",
            earlier.training.evals_per_epoch,
            config.training.evals_per_epoch,
        ),
    ):
        if before != now:
            raise ConfigError(
                f"search.warm_start: {prior} ran with {what} {before}, this sweep "
                f"{now}; warm-start from a sweep with the same {what}"
            )


def misfit(
    params: dict[str, object],
    *,
    space: dict[str, optuna.distributions.BaseDistribution],
    fixed: dict[str, Value],
) -> str | None:
    """Why a prior trial does not fit the new space (one knob named), or None."""
    for knob, distribution in space.items():
        if knob not in params:
            return f"{knob} was not searched"
        try:
            inside = in_distribution(distribution, params[knob])
        except ValueError:  # a choice the new space does not offer
            inside = False
        if not inside:
            return f"{knob} outside the new space"
    for knob, value in params.items():
        if knob not in space and knob in fixed and not _same(fixed[knob], value):
            return f"{knob} is fixed at {fixed[knob]} now"
        ratio_of = RATIOS.get(knob)
        if ratio_of is not None and knob not in space:
            return f"{ratio_of} was a ratio of {RATIO_OF}"
    return None


def _same(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-12 * max(abs(float(a)), abs(float(b)), 1.0)
    return a == b


def copied(
    trial: optuna.trial.FrozenTrial,
    space: dict[str, optuna.distributions.BaseDistribution],
    *,
    origin: str,
) -> optuna.trial.FrozenTrial:
    """The trial as a new-study trial: its searched knobs, values, rung values and state."""
    import optuna

    rung_values = {k: v for k, v in trial.user_attrs.items() if k == RUNG_VALUES}

    return optuna.trial.create_trial(
        state=trial.state,
        params={knob: trial.params[knob] for knob in space},
        distributions=space,
        values=trial.values if trial.state == optuna.trial.TrialState.COMPLETE else None,
        intermediate_values=dict(trial.intermediate_values),
        user_attrs={ORIGIN: origin, **rung_values},
    )


def add_carried(study: optuna.Study, carried: Carried, *, say: Say) -> int:
    """Add the carried trials the study does not hold yet (a resumed driver adds none again)."""
    held = {t.user_attrs.get(ORIGIN) for t in study.get_trials(deepcopy=False)}
    new = [t for t in carried.trials if t.user_attrs[ORIGIN] not in held]
    study.add_trials(new)
    if new:
        say(f"Added {len(new)} trials of {carried.prior} to the study before the first new one")
    return len(new)
