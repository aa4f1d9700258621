"""The search: Optuna over the YAML space, in the sweep's own study, as Ray Tune drives it.

Two things Ray's own classes leave out are added here. A trial the scheduler stopped early is
told to Optuna as PRUNED, not COMPLETE, and each rung and each end is told once whatever a driver
crash replays (``PruneAwareOptunaSearch``). And after a driver crash, the search's saved state is
brought in step with the trials Ray restored (``SweepSearchGenerator``): Ray saves its trial list
and the search's state as separate files, and a crash between them pairs files of different saves.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from evals.metric_keys import FINAL_RUNG, RUNG
from sweeps.config import SweepConfig
from sweeps.search.pareto import RUNG_VALUES, Goal
from sweeps.search.samplers import build_sampler
from sweeps.search.space import Value, define_by_run
from sweeps.tracking.state import RAY_TRIAL_ID
from sweeps.tracking.storage import filesystem_and_path
from sweeps.tune.compat import (
    newest_experiment_state,
    set_live_trials,
    set_suggested_count,
    storage_id,
)
from sweeps.tune.context import rerunning

# RUNG: the trial's own rung count, ASHA's time and Optuna's step (Ray's training_iteration runs
# ahead of it when a restart falls back to an older checkpoint); FINAL_RUNG: 1 on a trial's last
# rung, when it ran to the end
UNFINISHED = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED)  # Ray runs these again on restore
PROGRESS_FORMAT = "lora-sweep searcher progress 1"  # what save() writes, as JSON


@dataclass(frozen=True)
class SearchRecipe:
    """What the sweep's searcher is built from, as plain data.

    Ray pickles the searcher into the Tuner's state (``tuner.pkl``) and saves it again at each
    experiment checkpoint. A live Optuna sampler need not survive that (Optuna 5.1's NSGA-II
    holds a thread lock and cannot be pickled), so the searcher is pickled as this recipe and its
    progress, and rebuilt from them. Every sampler keeps its model in the study (trials, their
    values and its own system attributes); only its random state is not. A rebuilt sampler's
    random stream is seeded from the seed and the number of trials the study holds
    (``samplers.resumed_seed``); a seed that fixes a design (grid, qmc) stays."""

    config: SweepConfig
    goals: tuple[Goal, ...]
    study_name: str
    storage_url: str | None = None  # None: an in-memory study (a replay), never saved


@dataclass
class SearchProgress:
    """What the searcher knows of the sweep's trials beyond the study: plain data, saved as JSON.
    Study trials are named by their number in the study."""

    study_trials: dict[str, int] = field(default_factory=dict)  # Ray trial id -> trial number
    ended: list[str] = field(default_factory=list)  # Ray trials told how they ended
    reported_rungs: dict[str, int] = field(default_factory=dict)  # Ray trial id -> last rung


class PruneAwareOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch that tells PRUNED for trials stopped early, tells each rung and each
    end once, and leaves no study trial orphaned.

    Pruned, not complete: Ray's OptunaSearch tells any trial that ended with a result COMPLETE
    with its last value, so a trial ASHA stopped at an early rung would count for TPE as if its
    early (worse) value were final. The trainable marks its last rung with ``final_rung=1``; a
    trial that ends without it was stopped early, and is told PRUNED. Ray passes every rung to
    ``on_trial_result`` except the one on which the scheduler decides STOP (also at ASHA's
    max_t), so that rung is reported when the trial ends: its intermediate values are complete.

    Several objectives (``metric`` a list): Optuna keeps one number per step, so each rung's
    values go in the study trial's user attribute ``rung_values`` ({rung: [each objective]});
    a trial stopped early is told PRUNED with no values, its rungs there.

    Once: the study (sqlite) is written at each call, while Ray saves this searcher every few
    seconds; after a driver crash the restored searcher can be older than the study, and a
    restarted trial replays its rungs. A rung the study holds, or an end it holds, is not told
    again.

    No orphans: a study trial asked just before a driver crash and held by no restored Ray trial
    would stay RUNNING; the next suggestion reuses it. Each study trial carries its Ray trial's
    id (user attribute ``ray_trial_id``), so a restore can find the study trial of a Ray trial
    that an older saved searcher does not know (``keep_trials``).
    """

    def __init__(
        self,
        *,
        space: Callable[[optuna.Trial], dict[str, Value]],
        metric: str | list[str],
        mode: str | list[str],
        sampler: optuna.samplers.BaseSampler,
        storage: optuna.storages.BaseStorage,
        study_name: str,
        recipe: SearchRecipe | None = None,
    ) -> None:
        super().__init__(
            space=space,
            metric=metric,
            mode=mode,
            sampler=sampler,
            storage=storage,
            study_name=study_name,
        )
        self._study_storage = storage  # the study's records, read back to tell each thing once
        self._reported_step: dict[str, int] = {}
        self._metrics = metric if isinstance(metric, list) else [metric]
        self._recipe = recipe  # how to build it again (None: it cannot be pickled)
        if self.study.metric_names != self._metrics:  # optuna-dashboard: not "Objective 0"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(self._metrics)

    def __getstate__(self) -> dict[str, object]:
        """What Ray's pickling keeps (the Tuner's state): the recipe and the progress, plain data;
        never the live sampler or study."""
        if self._recipe is None or self._recipe.storage_url is None:
            raise TypeError(
                "this searcher has no recipe with a stored study, so Ray cannot save "
                "it: build it with optuna_search(SearchRecipe(..., storage_url=...))"
            )
        return {"recipe": self._recipe, "progress": asdict(self.progress())}

    def __setstate__(self, state: Mapping[str, object]) -> None:
        recipe, progress = state["recipe"], state["progress"]
        assert isinstance(recipe, SearchRecipe) and isinstance(progress, dict)
        self.__dict__.update(optuna_search(recipe, reseed=True).__dict__)
        self.load_progress(SearchProgress(**progress))

    def save(self, checkpoint_path: str) -> None:
        """Ray's searcher file (``searcher-state-*.pkl``, by Ray's name): the progress as JSON."""
        body = {"format": PROGRESS_FORMAT, **asdict(self.progress())}
        Path(checkpoint_path).write_text(json.dumps(body))

    def restore(self, checkpoint_path: str) -> None:
        """Take the progress save() wrote onto this searcher, as rebuilt from its recipe. A file
        of a sweep saved before the progress was JSON is Ray's own pickle, read as Ray reads it."""
        try:
            body = json.loads(Path(checkpoint_path).read_text())
        except (UnicodeDecodeError, ValueError):
            super().restore(checkpoint_path)
            return
        body.pop("format", None)
        self.load_progress(SearchProgress(**body))

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Ray's restore, which raises when its own upload never wrote the searcher's file (a
        driver killed first: the search state and trial list arrived, this one did not). The
        study holds everything the progress would say (each study trial's Ray trial id, its rungs
        and its end), so the searcher then starts from it alone (``keep_trials`` matches them)."""
        if any(Path(checkpoint_dir).glob(self.CKPT_FILE_TMPL.format("*"))):
            super().restore_from_dir(checkpoint_dir)

    def progress(self) -> SearchProgress:
        """The Ray trials' study trials, ends and rungs told, as plain data."""
        return SearchProgress(
            study_trials={ray_id: t.number for ray_id, t in self._ot_trials.items()},
            ended=sorted(self._completed_trials),
            reported_rungs=dict(self._reported_step),
        )

    def load_progress(self, progress: SearchProgress) -> None:
        study_id = self._study_storage.get_study_id_from_name(self.study.study_name)
        self._ot_trials = {
            ray_id: optuna.trial.Trial(
                self.study,
                self._study_storage.get_trial_id_from_study_id_trial_number(study_id, number),
            )
            for ray_id, number in progress.study_trials.items()
        }
        self._completed_trials = set(progress.ended)
        self._reported_step = dict(progress.reported_rungs)

    @property
    def study(self) -> optuna.Study:
        """The sweep's study (created by OptunaSearch's __init__, as the space is given)."""
        assert self._ot_study is not None
        return self._ot_study

    def on_trial_result(self, trial_id: str, result: dict[str, object]) -> None:
        """Report the rung's value at the rung's step, once (a restarted trial replays rungs)."""
        if trial_id not in self._completed_trials and trial_id in self._ot_trials:
            self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, object] | None = None, error: bool = False
    ) -> None:
        """Tell how the trial ended: COMPLETE with its value after its final rung, PRUNED before
        it (its last rung reported first), FAIL on error; once."""
        if self._told_before(trial_id):  # ended before a driver crash, resumed from older state
            self._completed_trials.add(trial_id)
            return
        if trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)  # Ray warns
            return
        if trial_id not in self._ot_trials:  # no study trial to tell
            return
        if result is not None and not error and self._measured(result):
            self._report(trial_id, result)
        if result is None or error or result.get(FINAL_RUNG):
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        self.study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def suggest(self, trial_id: str) -> dict[str, object] | None:
        """A new trial's hyperparameters: first those of a study trial a driver crash orphaned
        (asked, RUNNING, held by no Ray trial), so the study never keeps an orphan."""
        if trial_id not in self._ot_trials:
            orphan = self._orphan()
            if orphan is not None:
                self._ot_trials[trial_id] = orphan
        suggested: dict[str, object] | None = super().suggest(trial_id)
        if suggested is not None:
            self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return suggested

    def keep_trials(self, held: Collection[str]) -> None:
        """Match this restored state to the Ray trials Ray restored: forget the others (a study
        trial only they held is an orphan, which the next suggestion reuses), and find each held
        trial's study trial by the Ray trial id it carries (a state saved before it was asked
        lacks it)."""
        tagged = {
            str(t.user_attrs[RAY_TRIAL_ID]): storage_id(t)
            for t in self.study.get_trials(deepcopy=False)
            if RAY_TRIAL_ID in t.user_attrs
        }
        known = {trial_id: t for trial_id, t in self._ot_trials.items() if trial_id in held}
        found = {
            trial_id: optuna.trial.Trial(self.study, tagged[trial_id])
            for trial_id in held
            if trial_id in tagged
        }
        self._ot_trials = {**known, **found}

    def forget_ends(self, trial_ids: Collection[str]) -> None:
        """Forget that these trials ended (``sweep rerun --failed`` runs them again), so their
        new rungs and end are told to their new study trials."""
        for trial_id in trial_ids:
            self._completed_trials.discard(trial_id)
            self._reported_step.pop(trial_id, None)

    def _measured(self, result: Mapping[str, object]) -> bool:
        """Whether the result holds an objective (every rung does; a benchmark is scored at the
        last one only)."""
        return any(metric in result for metric in self._metrics)

    def _report(self, trial_id: str, result: Mapping[str, object]) -> None:
        step = int(_number(result, RUNG))
        if step <= self._reported_step.get(trial_id, 0) or self._study_holds(trial_id, step):
            return
        if len(self._metrics) > 1:
            self._report_values(trial_id, step, result)
        else:
            self._ot_trials[trial_id].report(_number(result, self._metrics[0]), step)
        self._reported_step[trial_id] = step

    def _report_values(self, trial_id: str, step: int, result: Mapping[str, object]) -> None:
        """A multi-objective rung: each objective's value (None where not measured yet)."""
        stored = self._stored_trial(trial_id)
        rungs = dict(stored.user_attrs.get(RUNG_VALUES, {})) if stored is not None else {}
        rungs[str(step)] = [_number(result, m) if m in result else None for m in self._metrics]
        self._ot_trials[trial_id].set_user_attr(RUNG_VALUES, rungs)

    def _study_holds(self, trial_id: str, step: int) -> bool:
        """Whether the study holds this rung's value, or the trial as ended (told just before a
        driver crash, after which Ray's older state ran it again)."""
        stored = self._stored_trial(trial_id)
        if stored is None:
            return False
        return (
            stored.state.is_finished()
            or step in stored.intermediate_values
            or str(step) in stored.user_attrs.get(RUNG_VALUES, {})
        )

    def _orphan(self) -> optuna.trial.Trial | None:
        held = {storage_id(t) for t in self._ot_trials.values()}
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        orphan = next((storage_id(t) for t in running if storage_id(t) not in held), None)
        return None if orphan is None else optuna.trial.Trial(self.study, orphan)

    def _told_before(self, trial_id: str) -> bool:
        """Whether the study already holds this trial as ended (its storage outlives us)."""
        if trial_id in self._completed_trials:
            return False
        stored = self._stored_trial(trial_id)
        return stored is not None and stored.state.is_finished()

    def _stored_trial(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        """The study's own record of a Ray trial's study trial, read from its storage."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return None
        return self._study_storage.get_trial(storage_id(ot_trial))


def _number(result: Mapping[str, object], key: str) -> float:
    value = result[key]
    if not isinstance(value, int | float):
        raise TypeError(f"the trial's {key!r} is {value!r}, not a number")
    return float(value)


class SweepSearchGenerator(SearchGenerator):
    """Ray's SearchGenerator (it makes a trial of each suggestion, up to num_samples), brought in
    step on restore with the trials Ray restored.

    Ray saves its trial list (``experiment_state-*.json``) and the search's state (the count of
    trials made and the ConcurrencyLimiter's live trials in ``search_gen_state-*.json``, the
    searcher in ``searcher-state-*.pkl``) as separate files, and uploads them in a background
    thread while the next save rewrites them. A driver killed in between leaves files of
    different saves: 3 trials with a count of 4, say, and the lost fourth trial counts towards
    num_samples but never runs (every resume then ends one trial short); or a count one short,
    and a fifth trial. So after the saved state is read, the count, the live trials and the
    searcher's trials are set from the trial list Ray restored."""

    def __init__(self, searcher: ConcurrencyLimiter, *, experiment: str) -> None:
        super().__init__(searcher)
        self.experiment = experiment  # the Tune experiment's directory (or URI)

    @property
    def limiter(self) -> ConcurrencyLimiter:
        assert isinstance(self.searcher, ConcurrencyLimiter)
        return self.searcher

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        restored = restored_trials(self.experiment)
        if restored is None:  # none readable where the sweep made it: the state as saved
            return
        set_suggested_count(self, len(restored))
        live = {
            trial_id
            for trial_id, status in restored.items()
            if status in UNFINISHED or trial_id in rerunning()
        }
        set_live_trials(self.limiter, live)
        if isinstance(self.limiter.searcher, PruneAwareOptunaSearch):
            self.limiter.searcher.keep_trials(restored)
            self.limiter.searcher.forget_ends(rerunning() & set(restored))


def restored_trials(experiment: str) -> dict[str, str] | None:
    """Each trial's id and status in the experiment state Ray resumes from, picked by Ray's own
    function (the newest by name: one file per driver session); None when there is none or it
    cannot be read."""
    filesystem, root = filesystem_and_path(experiment)
    try:
        newest = newest_experiment_state(root, filesystem)
        if newest is None:
            return None
        with filesystem.open_input_stream(newest) as stream:
            trial_data = json.loads(stream.readall())["trial_data"]
        trials = [json.loads(trial_state) for trial_state, _ in trial_data]
        return {str(t["trial_id"]): str(t["status"]) for t in trials}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_searcher(
    config: SweepConfig,
    *,
    goals: Sequence[Goal],
    storage_url: str,
    study_name: str,
    experiment: str,
) -> SweepSearchGenerator:
    """Optuna (the sampler search.algorithm names, sweeps/search/samplers.py) over the YAML space,
    persisted in the sweep's study, at most max_concurrent trials at once, for the Tune
    experiment at ``experiment``."""
    recipe = SearchRecipe(config, tuple(goals), study_name, storage_url)
    limiter = ConcurrencyLimiter(optuna_search(recipe), max_concurrent=config.search.max_concurrent)
    return SweepSearchGenerator(limiter, experiment=experiment)


def optuna_search(
    recipe: SearchRecipe,
    *,
    storage: optuna.storages.BaseStorage | None = None,
    reseed: bool = False,
) -> PruneAwareOptunaSearch:
    """The sweep's searcher itself: the YAML space and the configured sampler on the recipe's
    study (a sweep's sqlite or PostgreSQL study), or on ``storage`` (an in-memory one for
    replays, sweeps/tune/replay.py). Several goals make a multi-objective study (tpe is then
    Optuna's multi-objective TPE). ``reseed``: a rebuilt searcher, whose sampler's random stream
    restarts from the trials the study holds (``samplers.build_sampler``)."""
    config, goals = recipe.config, recipe.goals
    if storage is None:
        assert recipe.storage_url is not None, "a recipe without a storage URL needs a storage"
        storage = optuna.storages.RDBStorage(recipe.storage_url)
    resumed_at = trials_in_study(storage, recipe.study_name) if reseed else 0
    metric: str | list[str] = goals[0].metric if len(goals) == 1 else [g.metric for g in goals]
    mode: str | list[str] = goals[0].mode if len(goals) == 1 else [g.mode for g in goals]
    return PruneAwareOptunaSearch(
        space=define_by_run(config),
        metric=metric,
        mode=mode,
        sampler=build_sampler(config, resumed_at=resumed_at),
        storage=storage,
        study_name=recipe.study_name,
        recipe=recipe,
    )


def trials_in_study(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """How many trials the named study holds (0 when it does not exist yet)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))
