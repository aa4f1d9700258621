"""The sweep YAML's typed schema, parsed with ``yaml.safe_load`` and checked before any compute.

Each section lives beside the code that reads it: the data, training and a trial's
hyperparameters in ``trainers/config.py``; the objective, held-out scoring and benchmarks in
``evals/config.py``; the search space (derived from the hyperparameters) and the driver's own
sections here. This package puts them together (``SweepConfig``) and loads the YAML. It imports
neither torch, ray nor mlflow, so ``sweep validate`` stays fast.
"""

from evals.config import TASK_METRICS, BenchmarksConfig, HeldoutEval, Objective, ObjectiveTerm
from sweeps.config.checks import ConfigError, check_safe_name
from sweeps.config.loading import config_from_dict, load_config, resolve_path
from sweeps.config.search_space import (
    INTEGER_KNOBS,
    KNOBS,
    RATIO_KNOBS,
    TARGET_KNOBS,
    Choice,
    IntRange,
    LogUniform,
    ParamSpec,
    RatioOfR,
    SearchSpace,
    Spec,
    Uniform,
    ratio_name,
    yaml_number,
)
from sweeps.config.sections import (
    AshaConfig,
    EvidenceKind,
    JudgeConfig,
    NoScheduler,
    PrepareConfig,
    PromoteConfig,
    Recovery,
    Resources,
    SearchConfig,
    Tracking,
)
from sweeps.config.sweep import SweepConfig
from trainers.config import (
    BASE_REWRITING_INITS,
    MIN_HELDOUT_ROWS,
    MIN_TRAIN_ROWS,
    TRAINING_KNOBS,
    DataConfig,
    DataFormat,
    Hyperparameters,
    InitLoraWeights,
    TrainingConfig,
)

__all__ = [
    "BASE_REWRITING_INITS",
    "INTEGER_KNOBS",
    "KNOBS",
    "MIN_HELDOUT_ROWS",
    "MIN_TRAIN_ROWS",
    "RATIO_KNOBS",
    "TARGET_KNOBS",
    "TASK_METRICS",
    "TRAINING_KNOBS",
    "AshaConfig",
    "BenchmarksConfig",
    "Choice",
    "ConfigError",
    "DataConfig",
    "DataFormat",
    "EvidenceKind",
    "HeldoutEval",
    "Hyperparameters",
    "InitLoraWeights",
    "IntRange",
    "JudgeConfig",
    "LogUniform",
    "NoScheduler",
    "Objective",
    "ObjectiveTerm",
    "ParamSpec",
    "PrepareConfig",
    "PromoteConfig",
    "RatioOfR",
    "Recovery",
    "Resources",
    "SearchConfig",
    "SearchSpace",
    "Spec",
    "SweepConfig",
    "Tracking",
    "TrainingConfig",
    "Uniform",
    "check_safe_name",
    "config_from_dict",
    "load_config",
    "ratio_name",
    "resolve_path",
    "yaml_number",
]
