"""``search.algorithm``: which Optuna sampler explores the space, and what it will do with it.

Every sampler runs behind the same Ray OptunaSearch (``sweeps/tune/searcher.py``), so trials
stopped early reach each of them as PRUNED with their rung values. No ray here: ``sweep
validate`` describes the search from this module too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna

from sweeps.config import AshaConfig, Choice, RatioOfR, SweepConfig
from sweeps.search.pareto import Goal, describe_goals
from sweeps.search.space import active_specs, fixed_value, grid_values

ALGORITHMS = {
    "tpe": "TPE (Optuna's Bayesian default)",
    "random": "random search",
    "grid": "grid search (every combination, in a seeded order)",
    "gp": "Gaussian-process Bayesian optimisation",
    "cmaes": "CMA-ES",
    "qmc": "quasi-Monte Carlo (scrambled Sobol)",
    "nsga2": "NSGA-II (a genetic algorithm; one objective or several)",
}
CONTINUOUS_ONLY = ("cmaes", "qmc")  # they sample choice knobs independently, at random


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, minus its ``Study.stop()`` once the grid is walked: that raises
    outside ``study.optimize()``, and Ray asks and tells (the last grid trial's tell raised).
    Ray's num_samples, capped at the grid's size by preflight, ends the search instead."""

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def choice_knobs(config: SweepConfig) -> list[str]:
    """The searched knobs that are choices among values (Optuna's categorical distributions)."""
    out = []
    for knob, spec in active_specs(config).items():
        if isinstance(spec, RatioOfR) and len(spec.values) > 1:
            out.append(f"{knob} (ratio of r)")
        elif isinstance(spec, Choice) and fixed_value(knob, spec) is None:
            out.append(knob)
    return out


def startup_trials(config: SweepConfig) -> int:
    """Random trials before a model-based sampler fits: a third of the budget, 2 to 10."""
    return min(10, max(2, config.search.num_samples // 3))


def resumed_seed(seed: int, trials_in_study: int) -> int:
    """The seed of a random stream restarted when the study already holds trials (a sampler
    rebuilt on resume): its own stream, not a replay of the first trials' draws (which would
    suggest them again), and the same for the same seed and study."""
    if trials_in_study == 0:
        return seed
    return int(np.random.SeedSequence([seed, trials_in_study]).generate_state(1)[0])


def build_sampler(config: SweepConfig, *, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``search.algorithm``, seeded with ``search.seed``. ``resumed_at``:
    the trials the study holds when the sampler is rebuilt on resume (sweeps/tune/searcher.py).
    Every sampler keeps its model in the study; its random stream restarts from
    ``resumed_seed``, except where the seed fixes a design whose position the study keeps: the
    grid's order, and the scrambling of QMC's Sobol sequence (its independent sampler, for
    choice knobs, is a stream)."""
    search = config.search
    seed, stream = search.seed, resumed_seed(search.seed, resumed_at)
    startup = startup_trials(config)
    quiet = False  # warn_independent_sampling: sampler_note says it once, not every trial
    if search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=stream)
    if search.algorithm == "grid":
        return AskTellGridSampler(grid_values(config), seed=seed)
    if search.algorithm == "gp":
        return optuna.samplers.GPSampler(
            seed=stream, n_startup_trials=startup, warn_independent_sampling=quiet
        )
    if search.algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=stream, n_startup_trials=startup, warn_independent_sampling=quiet
        )
    if search.algorithm == "qmc":
        return optuna.samplers.QMCSampler(
            seed=seed,
            scramble=True,
            warn_independent_sampling=quiet,
            independent_sampler=optuna.samplers.RandomSampler(seed=stream),
        )
    if search.algorithm == "nsga2":
        population = max(2, min(50, search.num_samples // 2))
        return optuna.samplers.NSGAIISampler(seed=stream, population_size=population)
    return optuna.samplers.TPESampler(
        seed=stream,
        n_startup_trials=startup,
        multivariate=search.multivariate,
        group=search.group,
        warn_independent_sampling=quiet,
    )


def sampler_note(config: SweepConfig) -> str | None:
    """One line when the sampler searches only part of the space: CMA-ES and QMC sample choice
    knobs at random (Optuna's independent sampler), not with their model."""
    algorithm = config.search.algorithm
    choices = choice_knobs(config)
    if algorithm not in CONTINUOUS_ONLY or not choices:
        return None
    return (
        f"search.algorithm {algorithm}: {', '.join(choices)} "
        f"{'are choices' if len(choices) > 1 else 'is a choice'}, which "
        f"{ALGORITHMS[algorithm]} samples at random; it searches the ranges. Make them "
        "ranges (int, uniform, loguniform) to search them with it, or use tpe"
    )


def describe_search(config: SweepConfig, *, goals: Sequence[Goal], max_rungs: int) -> list[str]:
    """What ``sweep validate`` says of the search: the algorithm, the objective(s), and how
    trials are stopped."""
    search = config.search
    algorithm = ALGORITHMS[search.algorithm]
    if search.algorithm == "tpe" and search.multivariate:
        algorithm += ", multivariate" + (" with groups" if search.group else "")
    if search.algorithm == "tpe" and len(goals) > 1:
        algorithm += ", multi-objective"
    lines = [
        f"search: {search.algorithm}, {algorithm}; {search.num_samples} trials, seed {search.seed}",
        describe_goals(goals).replace(" ", ": ", 1),
    ]
    scheduler = config.scheduler
    if isinstance(scheduler, AshaConfig) and max_rungs > 1:
        ranked = (
            "MO-ASHA: a trial is stopped only when a trial at its rung dominates it and it "
            "is outside the rung's top"
            if len(goals) > 1
            else "every trial runs "
            f"{min(scheduler.grace_period, max_rungs)} rung(s), then goes on only in the "
            "top"
        )
        lines.append(
            f"stopping: ASHA on the held-out rungs (of {max_rungs}): {ranked} "
            f"1/{scheduler.reduction_factor:g} of its rung; a stopped trial reaches "
            "Optuna as PRUNED with its rung values"
        )
    else:
        lines.append("stopping: none, every trial runs all its rungs")
    note = sampler_note(config)
    return [*lines, note] if note else lines
