"""The YAML schema: every shipped config validates; every bad value names its file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweeps.config import Choice, ConfigError, LogUniform, RatioOfR, config_from_dict, load_config
from tests.conftest import REPO

SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))
MINIMAL = "data:\n  train: train.jsonl\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_yaml_validates_and_opens_with_its_command(path: Path) -> None:
    config = load_config(path)
    assert path.read_text().splitlines()[0] == f"# sweep launch search_spaces/{path.name}"
    assert (path.parent / config.data.train).resolve().is_file()
    if config.data.heldout:
        assert (path.parent / config.data.heldout).resolve().is_file()


def test_shipped_yamls_exist() -> None:
    assert any(p.name == "lora.yaml" for p in SHIPPED)


def test_defaults_fill_a_minimal_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.base_model == "smollm2-135m-instruct"
    assert config.trust_remote_code is False
    assert config.tracking.mlflow_uri == "sqlite:///mlruns/mlflow.db"
    assert isinstance(config.search_space.learning_rate, LogUniform)
    assert config.scheduler.type == "asha"


def test_list_shorthand_is_a_choice_and_scalar_is_fixed(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "search_space:\n  lora_r: [4, 8]\n  num_epochs: 3\n  lora_alpha: {type: ratio_of_r, values: [2]}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.search_space.lora_r == Choice(type="choice", values=[4, 8])
    assert config.search_space.num_epochs == 3
    assert isinstance(config.search_space.lora_alpha, RatioOfR)


BAD = [
    ("unknown key", MINIMAL + "learning_rat: 0.1\n", 3, "learning_rat: unknown key 'learning_rat'"),
    (
        "lr <= 0",
        MINIMAL + "search_space:\n  learning_rate: {type: loguniform, low: 0, high: 1.0e-3}\n",
        4,
        "search_space.learning_rate: values must be > 0",
    ),
    (
        "negative fixed lr",
        MINIMAL + "search_space:\n  learning_rate: -0.001\n",
        4,
        "search_space.learning_rate: values must be > 0",
    ),
    (
        "r not an integer",
        MINIMAL + "search_space:\n  lora_r: [8, 2.5]\n",
        4,
        "search_space.lora_r: values must be whole numbers, got 2.5",
    ),
    (
        "r zero",
        MINIMAL + "search_space:\n  lora_r: [0, 8]\n",
        4,
        "search_space.lora_r: values must be >= 1",
    ),
    (
        "empty choice",
        MINIMAL + "search_space:\n  lora_r: []\n",
        4,
        "search_space.lora_r: choice list is empty",
    ),
    (
        "empty targets",
        MINIMAL + "training:\n  lora_target_modules: []\n",
        4,
        "training.lora_target_modules: choice list is empty",
    ),
    (
        "unknown nested key",
        MINIMAL + "training:\n  micro_batch: 4\n",
        4,
        "training.micro_batch: unknown key",
    ),
    (
        "bad algorithm",
        MINIMAL + "search:\n  algorithm: bayes\n",
        4,
        "search.algorithm: Input should be",
    ),
    ("missing data", "name: x\n", None, "data: required field is missing"),
    ("path-like name", MINIMAL + "name: ../escape\n", 3, "name: name '../escape' must be"),
    (
        "ratio for r",
        MINIMAL + "search_space:\n  lora_r: {type: ratio_of_r, values: [2]}\n",
        4,
        "'ratio_of_r' is only allowed for lora_alpha",
    ),
    (
        "gpu fraction > 1",
        MINIMAL + "resources:\n  gpu: 1.5\n",
        4,
        "resources.gpu: a fraction of a GPU",
    ),
    (
        "unknown objective",
        MINIMAL + "objective:\n  metric: accuracy\n",
        4,
        "objective.metric: unknown metric",
    ),
    (
        "grid with loguniform",
        MINIMAL + "search:\n  algorithm: grid\n",
        None,
        "grid needs finite choices",
    ),
    (
        "misspelt distribution type",
        MINIMAL + "search_space:\n  lora_r: {type: choise, values: [1]}\n",
        4,
        "search_space.lora_r: type must be one of loguniform, uniform, int, choice, ratio_of_r; got 'choise'",
    ),
    (
        "distribution missing a bound",
        MINIMAL + "search_space:\n  learning_rate: {type: loguniform, low: 1.0e-4}\n",
        4,
        "search_space.learning_rate: loguniform: high: field required",
    ),
    (
        "text where a number belongs",
        MINIMAL + "search_space:\n  lora_alpha: sixteen\n",
        4,
        "search_space.lora_alpha: expected a number, a list of choices",
    ),
    (
        "dropout >= 1",
        MINIMAL + "search_space:\n  lora_dropout: [0.1, 1.0]\n",
        4,
        "search_space.lora_dropout: values must be < 1",
    ),
    (
        "guard on an unlisted benchmark",
        MINIMAL + "objective:\n  guard: {mmlu: 0.02}\nbenchmarks:\n  tasks: [arc_challenge]\n",
        None,
        "objective.guard names mmlu, which benchmarks.tasks does not list",
    ),
    (
        "negative guard margin",
        MINIMAL + "objective:\n  guard: {mmlu: -0.1}\nbenchmarks:\n  tasks: [mmlu]\n",
        4,
        "objective.guard: mmlu: a guard margin is a drop, so it must be >= 0",
    ),
    (
        "benchmark listed twice",
        MINIMAL + "benchmarks:\n  tasks: [mmlu, mmlu]\n",
        4,
        "benchmarks.tasks: listed twice: mmlu",
    ),
    (
        "proxy size for an unlisted task",
        MINIMAL + "benchmarks:\n  tasks: [mmlu]\n  proxy_sizes: {hellaswag: 8}\n",
        3,
        "benchmarks: proxy_sizes names hellaswag, not in tasks",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_file_line_and_field(
    tmp_path: Path, case: str, text: str, line: int | None, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    first = str(caught.value).splitlines()[0]
    where = f"{path}:{line}: " if line else f"{path}"
    assert first.startswith(where), first
    assert message in first, first


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep.yaml:\d+: not valid YAML"):
        load_config(write(tmp_path, "data:\n  train: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_knob_in_both_training_and_search_space_is_refused() -> None:
    raw = yaml.safe_load(
        MINIMAL + "training:\n  lora_dropout: 0.1\nsearch_space:\n  lora_dropout: [0, 0.1]\n"
    )
    with pytest.raises(ConfigError, match="lora_dropout is set in both"):
        config_from_dict(raw)


def test_training_knobs_can_be_searched_and_a_resolved_dump_reads_back() -> None:
    """micro_batch_size, gradient_accumulation_steps and lora_target_modules are searchable;
    a dump of the config (launch_config.yaml, which holds every training default) validates
    again, while a user's own training value beside the search is still refused."""
    from sweeps.search.space import distributions

    raw = yaml.safe_load(MINIMAL + "search_space:\n  micro_batch_size: [2, 4]\n"
                         "  gradient_accumulation_steps: {type: int, low: 1, high: 4}\n"
                         "  lora_target_modules: [attention, all-linear, ' q_proj, v_proj']\n")  # fmt: skip
    config = config_from_dict(raw)
    space = distributions(config)
    assert space["lora_target_modules"].choices == ("attention", "all-linear", "q_proj,v_proj")
    assert space["micro_batch_size"].choices == (2, 4)
    assert (
        space["gradient_accumulation_steps"].low,
        space["gradient_accumulation_steps"].high,
    ) == (1, 4)
    assert config_from_dict(config.model_dump(mode="json")) == config
    raw["training"] = {"micro_batch_size": 8}
    with pytest.raises(ConfigError, match="micro_batch_size is set in both"):
        config_from_dict(raw)


@pytest.mark.parametrize("bad", ["[[1]]", "[]", "[attention, '']", "5"])
def test_a_bad_target_set_is_one_line(bad: str) -> None:
    raw = yaml.safe_load(MINIMAL + f"search_space:\n  lora_target_modules: {bad}\n")
    with pytest.raises(ConfigError, match="lora_target_modules") as caught:
        config_from_dict(raw)
    assert len(str(caught.value).splitlines()) == 1


PEFT_VARIANTS = "  use_rslora: true\n  use_dora: true\n  loraplus_lr_ratio: 16\n"


def test_peft_variants_validate_with_lora_and_qlora(tmp_path: Path) -> None:
    lora = load_config(write(tmp_path, MINIMAL + "training:\n" + PEFT_VARIANTS))
    assert lora.training.use_rslora and lora.training.use_dora
    assert lora.training.loraplus_lr_ratio == 16
    for init in ("gaussian", "pissa", "olora"):  # pissa and olora: not with DoRA
        text = MINIMAL + f"training:\n  use_rslora: true\n  init_lora_weights: {init}\n"
        assert load_config(write(tmp_path, text)).training.init_lora_weights == init
    qlora = MINIMAL + "resources:\n  gpu: 1\ntraining:\n  adapter: qlora\n" + PEFT_VARIANTS
    for optimizer in ("adamw_torch", "sgd", "paged_adamw_8bit", "paged_adamw_32bit"):
        text = qlora + f"  init_lora_weights: gaussian\n  optimizer: {optimizer}\n"
        assert load_config(write(tmp_path, text)).training.optimizer == optimizer
    defaults = load_config(write(tmp_path, MINIMAL)).training
    assert (defaults.use_rslora, defaults.use_dora, defaults.init_lora_weights,
            defaults.loraplus_lr_ratio) == (False, False, "default", None)  # fmt: skip


REFUSED_VARIANTS = [
    ("pissa on a 4-bit base", "  adapter: qlora\n  init_lora_weights: pissa\n", 5,
     "training: init_lora_weights: pissa rewrites the base weights, which adapter: qlora keeps "
     "in 4-bit: use adapter: lora, or init_lora_weights: default or gaussian"),
    ("olora on a 4-bit base", "  init_lora_weights: olora\n  adapter: qlora\n", 5,
     "training: init_lora_weights: olora rewrites the base weights, which adapter: qlora"),
    ("dora with pissa", "  use_dora: true\n  init_lora_weights: pissa\n", 5,
     "training: use_dora with init_lora_weights: pissa: a pissa adapter is saved converted to a "
     "plain LoRA (for any base to load), which drops DoRA's magnitudes; choose one"),
    ("dora with olora", "  init_lora_weights: olora\n  use_dora: true\n", 5,
     "training: use_dora with init_lora_weights: olora"),
    ("loraplus ratio below 1", "  loraplus_lr_ratio: 0.5\n", 6,
     "training.loraplus_lr_ratio: Input should be greater than or equal to 1"),
    ("unknown init", "  init_lora_weights: pissa_niter_4\n", 6,
     "training.init_lora_weights: Input should be 'default', 'gaussian', 'pissa' or 'olora'"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "training", "line", "message"), REFUSED_VARIANTS,
                         ids=[r[0] for r in REFUSED_VARIANTS])  # fmt: skip
def test_refused_peft_variants_are_one_line_naming_the_fields(
    tmp_path: Path, case: str, training: str, line: int, message: str
) -> None:
    path = write(tmp_path, MINIMAL + "resources:\n  gpu: 1\ntraining:\n" + training)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = str(caught.value)
    assert error.startswith(f"{path}:{line}: {message}") and "\n" not in error, error


def test_a_yaml_exponent_without_a_dot_is_a_number(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads ``3e-5`` as a string; the guides write learning rates so."""
    path = tmp_path / "s.yaml"
    path.write_text("data: {train: t.jsonl}\nsearch_space:\n  learning_rate: [3e-5, 1e-4]\n"
                    "  weight_decay: 1e-2\n  lora_target_modules: [all-linear, attention]\n")  # fmt: skip
    assert yaml.safe_load(path.read_text())["search_space"]["learning_rate"] == ["3e-5", "1e-4"]
    space = load_config(path).search_space
    assert isinstance(space.learning_rate, Choice) and space.learning_rate.values == [3e-5, 1e-4]
    assert space.weight_decay == 0.01
    assert isinstance(space.lora_target_modules, Choice)
    assert space.lora_target_modules.values == ["all-linear", "attention"]


@pytest.mark.parametrize(("recovery", "removes"), [
    ({}, True), ({"keep_best_by": "objective"}, False),
    ({"keep_finished_checkpoints": True}, False),
    ({"keep_best_by": "objective", "keep_finished_checkpoints": False}, True),
])  # fmt: skip
def test_finished_trials_checkpoints_go_unless_kept(
    recovery: dict[str, object], removes: bool
) -> None:
    """By default an ended trial's checkpoints go (its adapter stays); keeping the best by the
    objective keeps them unless told otherwise, since the best checkpoint is the point of it."""
    config = config_from_dict({"data": {"train": "t.jsonl"}, "recovery": recovery})
    assert config.recovery.removes_finished_checkpoints is removes
