"""The bad-input table: every case is refused before compute with one line naming the file and
the field or row, exit 2; none imports ray or mlflow, starts Ray, or writes to MLflow.

All cases run in one fresh interpreter (``run_table``), one ``sweep launch`` after another, so
the table stays cheap and "ray/mlflow never imported" is checked case by case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, nothing_reached_mlflow, tiny_sweep_config, write_jsonl

RUNNER = """
import contextlib, io, json, sys
from sweeps.cli.main import main
results = {}
for case, argv in json.loads(sys.argv[1]).items():
    before = {m for m in ("ray", "mlflow") if m in sys.modules}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException as exc:
            rc, err = "raised", io.StringIO(f"{type(exc).__name__}: {exc}")
    imported = sorted({m for m in ("ray", "mlflow") if m in sys.modules} - before)
    results[case] = {"rc": rc, "stderr": err.getvalue(), "imported": imported}
print("TABLE" + json.dumps(results))
"""

Case = tuple[list[str], str]  # argv of `sweep`, a substring the one error line must hold


class Table:
    """Writes each case's files under ``tmp`` and builds its command line."""

    def __init__(self, model: Path, tmp: Path) -> None:
        self.tmp, self.model = tmp, model
        rows = [
            {
                "instruction": f"Record {i} for the ledger.",
                "input": "",
                "output": f'{{"item": {i}, "unit": "box"}}',
            }
            for i in range(8)
        ]
        self.rows = rows
        self.data = {
            "train": write_jsonl(tmp / "train.jsonl", rows),
            "heldout": write_jsonl(
                tmp / "held.jsonl",
                [{**r, "instruction": f"Held {r['instruction']}"} for r in rows[:2]],
            ),
        }
        self.base = tiny_sweep_config(model, self.data, tmp)
        self.base["tracking"]["mlflow_uri"] = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"

    def config(self, file: str, /, **sections: Any) -> str:
        """A config file: the base with sections merged in (None removes a key)."""
        config = json.loads(json.dumps(self.base))
        for key, value in sections.items():
            if value is None:
                config.pop(key, None)
            elif isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        path = self.tmp / f"{file}.yaml"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    def text(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def train(self, name: str, path: Path, **data: Any) -> str:
        return self.config(
            name, data={"train": str(path), "heldout": str(self.data["heldout"]), **data}
        )

    def space(self, name: str, **knobs: Any) -> str:
        return self.config(name, search_space={**self.base["search_space"], **knobs})


def launch(config: str, *extra: str) -> list[str]:
    return ["launch", config, "--name", "bad", *extra]


def config_cases(t: Table) -> dict[str, Case]:
    bad_yaml = t.text("bad_yaml.yaml", "data:\n  train: [x.jsonl\n")
    top_list = t.text("top_list.yaml", "- data\n- search\n")
    return {
        "yaml syntax": (launch(str(bad_yaml)), f"{bad_yaml}:3: not valid YAML"),
        "yaml top-level list": (launch(str(top_list)), "expected a mapping of sections"),
        "yaml python tag": (
            launch(str(t.text("tag.yaml", "data: !!python/object/apply:os.system [id]\n"))),
            "not valid YAML (could not determine a constructor",
        ),
        "missing config file": (launch(str(t.tmp / "absent.yaml")), "config file not found"),
        "unknown top key": (
            launch(t.config("top", learning_rat=0.1)),
            "learning_rat: unknown key 'learning_rat'",
        ),
        "unknown nested key": (
            launch(t.config("nested", training={"micro_batch": 2})),
            "training.micro_batch: unknown key",
        ),
        "no data section": (
            launch(t.config("nodata", data=None)),
            "data: required field is missing",
        ),
        "lr <= 0": (
            launch(t.space("lr", learning_rate=0)),
            "search_space.learning_rate: values must be > 0",
        ),
        "low above high": (
            launch(
                t.space("lohi", learning_rate={"type": "loguniform", "low": 1e-2, "high": 1e-4})
            ),
            "lohi.yaml:24: search_space.learning_rate: high (0.0001) must be >= low (0.01)",
        ),
        "r negative": (
            launch(t.space("r", lora_r=[4, -2])),
            "search_space.lora_r: values must be >= 1",
        ),
        "empty choices": (
            launch(t.space("no-lengths", sequence_len=[])),
            "search_space.sequence_len: choice list is empty",
        ),
        "unknown spec type": (
            launch(t.space("normal", learning_rate={"type": "normal"})),
            "search_space.learning_rate: type must be one of",
        ),
        "ratio_of_r off alpha": (
            launch(t.space("ratio", lora_r={"type": "ratio_of_r", "values": [2]})),
            "search_space.lora_r: 'ratio_of_r' is only allowed for lora_alpha",
        ),
        "dropout of 1": (
            launch(t.space("drop", lora_dropout=[0.1, 1.0])),
            "search_space.lora_dropout: values must be < 1",
        ),
        "grid over a range": (
            launch(t.config("grid", search={"algorithm": "grid"})),
            "grid.yaml: search.algorithm grid needs finite choices",
        ),
        "no samples": (
            launch(t.config("zero", search={"num_samples": 0})),
            "search.num_samples: Input should be greater than or equal to 1",
        ),
        "unknown objective": (
            launch(t.config("obj", objective={"metric": "heldout/bleu"})),
            "objective.metric: unknown metric 'heldout/bleu'",
        ),
        "weight on unlisted task": (
            launch(t.config("weights", objective={"benchmark_weights": {"mmlu": 1.0}})),
            "objective.benchmark_weights names mmlu, which benchmarks.tasks does not list",
        ),
        "knob set twice": (
            launch(
                t.config(
                    "twice",
                    training={"weight_decay": 0.1},
                    search_space={**t.base["search_space"], "weight_decay": [0.0, 0.1]},
                )
            ),
            "twice.yaml: weight_decay is set in both training and search_space",
        ),
        "half GPU above one": (
            launch(t.config("gpu", resources={"gpu": 1.5})),
            "resources.gpu: a fraction of a GPU must be <= 1",
        ),
        "GPU on a CPU machine": (
            launch(t.config("cuda", resources={"gpu": 1})),
            "resources.gpu: 1.0 GPU per trial, but no CUDA GPU is visible",
        ),
        "qlora on a CPU trial": (
            launch(t.config("qlora", training={"adapter": "qlora"})),
            "training.adapter: qlora needs a CUDA GPU (bitsandbytes / fp16 kernels), but "
            "resources.gpu is 0",
        ),
        "fp16 on a CPU trial": (
            launch(t.config("fp16", training={"precision": "fp16"})),
            "training.precision: fp16 needs a CUDA GPU",
        ),
        "paged optimizer on CPU": (
            launch(t.config("paged", training={"optimizer": "paged_adamw_8bit"})),
            "training.optimizer: paged_adamw_8bit needs a CUDA GPU",
        ),
        "qlora with a GPU on a CPU machine": (
            launch(t.config("qlora-gpu", training={"adapter": "qlora"}, resources={"gpu": 1})),
            "resources.gpu: 1.0 GPU per trial, but no CUDA GPU is visible",
        ),
        "keep no checkpoints": (
            launch(t.config("keep", recovery={"keep_checkpoints": 0})),
            "recovery.keep_checkpoints: Input should be greater than or equal",
        ),
        "unknown scheduler": (
            launch(t.config("sched", scheduler={"type": "hyperband"})),
            "scheduler: Input tag 'hyperband' found using 'type' does not match",
        ),
        "unknown benchmark": (
            launch(t.config("bench", benchmarks={"tasks": ["arc_challeng"]})),
            "benchmarks: unknown lm-eval task(s): arc_challeng",
        ),
    }


def data_cases(t: Table) -> dict[str, Case]:
    good = "".join(json.dumps(r) + "\n" for r in t.rows)
    not_json_responses = [{**r, "output": f"item {i}"} for i, r in enumerate(t.rows)]
    leaked = {
        "instruction": "Write down the delivery of twelve crates of pears that came in "
        "late on Monday at the north gate.",
        "input": "",
        "output": '{"item": 12}',
    }
    return {
        "missing data file": (
            launch(t.train("absent-data", t.tmp / "absent.jsonl")),
            f"{t.tmp / 'absent.jsonl'}: data file not found",
        ),
        "row without response": (
            launch(
                t.train(
                    "noanswer",
                    write_jsonl(t.tmp / "noanswer.jsonl", [*t.rows[:4], {"instruction": "x"}]),
                )
            ),
            f"{t.tmp / 'noanswer.jsonl'}: row 5: missing field 'output'",
        ),
        "malformed JSON line": (
            launch(t.train("badline", t.text("badline.jsonl", good + "{oops\n"))),
            f"{t.tmp / 'badline.jsonl'}: row 9: not valid JSON",
        ),
        "CSV without output": (
            launch(t.train("csv", t.text("rows.csv", "instruction,answer\na,b\nc,d\n"))),
            f"{t.tmp / 'rows.csv'}:",
        ),
        "not UTF-8": (
            launch(t.train("latin", t.text("latin.jsonl", good.encode() + b"\xff\xfe\n"))),
            f"{t.tmp / 'latin.jsonl'}: not UTF-8",
        ),
        "empty train file": (
            launch(t.train("empty", t.text("empty.jsonl", ""))),
            f"{t.tmp / 'empty.jsonl'}: no examples found",
        ),
        "unknown extension": (
            launch(t.train("parquet", t.text("rows.parquet", "PAR1"))),
            f"{t.tmp / 'rows.parquet'}:",
        ),
        "field_f1 on plain text": (
            launch(
                t.config(
                    "plain",
                    data={
                        "task_metric": "field_f1",
                        "heldout": str(
                            write_jsonl(t.tmp / "plainheld.jsonl", not_json_responses[:2])
                        ),
                    },
                )
            ),
            "data.task_metric field_f1 needs JSON-object responses",
        ),
        "held-out rows in train": (
            launch(
                t.train(
                    "leak",
                    write_jsonl(t.tmp / "leak.jsonl", [*t.rows, leaked]),
                    heldout=str(write_jsonl(t.tmp / "leak-held.jsonl", [leaked])),
                )
            ),
            "data.train: 1 training rows share a 13-gram with held-out",
        ),
        "unknown column": (
            launch(t.config("columns", data={"columns": {"answr": "out"}})),
            "data.columns: unknown column 'answr'",
        ),
        "mapping to an absent column": (
            launch(t.config("absent-column", data={"columns": {"output": "nonexistent"}})),
            f"{t.data['train']}: columns mapping output=nonexistent: the file has no column "
            "'nonexistent'",
        ),
        "mapping not a mapping": (
            launch(t.config("columns-string", data={"columns": "output=answer"})),
            "data.columns: Input should be a valid dictionary",
        ),
        "rows of two shapes": (
            launch(
                t.train(
                    "two-shapes",
                    write_jsonl(
                        t.tmp / "two-shapes.jsonl", [*t.rows[:3], {"question": "a", "answer": "b"}]
                    ),
                )
            ),
            f"{t.tmp / 'two-shapes.jsonl'}: row 4: shape question_answer",
        ),
        "row in no shape": (
            launch(
                t.train(
                    "no-shape",
                    write_jsonl(t.tmp / "no-shape.jsonl", [{"query": "a", "reply": "b"}]),
                )
            ),
            f"{t.tmp / 'no-shape.jsonl'}: row 1: no known shape in keys (query, reply)",
        ),
        "one-row training file": (
            launch(
                t.train(
                    "one-row", write_jsonl(t.tmp / "one-row.jsonl", t.rows[:1]), allow_small=False
                )
            ),
            "data.train: 1 training row; a sweep needs at least 32",
        ),
        "held-out set too small": (
            launch(
                t.train(
                    "small-held",
                    write_jsonl(
                        t.tmp / "many.jsonl",
                        [
                            {**r, "instruction": f"{r['instruction']} Copy {k}."}
                            for k in range(5)
                            for r in t.rows
                        ],
                    ),
                    allow_small=False,
                )
            ),
            "data.heldout: 2 held-out rows; at least 20 are needed to tell trials apart",
        ),
        "prepare leaves no row": (
            launch(
                t.config(
                    "prep-empty",
                    prepare={"decontaminate": False},
                    data={
                        "train": str(
                            write_jsonl(
                                t.tmp / "echo.jsonl",
                                [
                                    {"instruction": f"echo {w}", "output": f"echo {w}"}
                                    for w in "abcd"
                                ],
                            )
                        )
                    },
                )
            ),
            "no training row survived: step quality removed all 4",
        ),
        "sequence_len too short": (
            launch(t.space("short", sequence_len=[8, 128])),
            "search_space.sequence_len: 8 tokens cuts away the response of every training row",
        ),
    }


def model_and_name_cases(t: Table) -> dict[str, Case]:
    empty_dir = t.tmp / "empty-model"
    empty_dir.mkdir(exist_ok=True)
    ok = t.config("ok")
    return {
        "unknown model id": (
            launch(t.config("model", base_model="no-such-org/no-such-model")),
            "model.yaml: base_model 'no-such-org/no-such-model': not in the local",
        ),
        "model dir without weights": (
            launch(t.config("nomodel", base_model=str(empty_dir))),
            f"nomodel.yaml: base_model {str(empty_dir)!r}: directory has no config.json",
        ),
        "blank model id": (
            launch(t.config("blank", base_model=" ")),
            "base_model: base_model must name an HF id",
        ),
        "unknown target module": (
            launch(t.config("target", training={"lora_target_modules": ["q_proj", "query"]})),
            "training.lora_target_modules: query selects no layer of",
        ),
        "unknown module in a searched target set": (
            launch(
                t.config(
                    "searched", search_space={"lora_target_modules": ["attention", "q_proj,query"]}
                )
            ),
            "search_space.lora_target_modules: query selects no layer of",
        ),
        "name escapes (..)": (["launch", ok, "--name", "../evil"], "sweep name '../evil' must be"),
        "name absolute": (["launch", ok, "--name", "/tmp/evil"], "sweep name '/tmp/evil' must be"),
        "name with NUL": (["launch", ok, "--name", "a\x00b"], "sweep name 'a\\x00b' must be"),
        "config name escapes": (
            launch(t.config("cname", name="../../etc")),
            "name: name '../../etc' must be",
        ),
        "resume unknown sweep": (
            ["resume", "no-such-sweep", "--state-dir", str(t.tmp / "sweeps")],
            "no-such-sweep",
        ),
    }


def all_cases(t: Table) -> dict[str, Case]:
    return {**config_cases(t), **data_cases(t), **model_and_name_cases(t)}


CASES = [
    "yaml syntax",
    "yaml top-level list",
    "yaml python tag",
    "missing config file",
    "unknown top key",
    "unknown nested key",
    "no data section",
    "lr <= 0",
    "low above high",
    "r negative",
    "empty choices",
    "unknown spec type",
    "ratio_of_r off alpha",
    "dropout of 1",
    "grid over a range",
    "no samples",
    "unknown objective",
    "weight on unlisted task",
    "knob set twice",
    "half GPU above one",
    "GPU on a CPU machine",
    "qlora on a CPU trial",
    "fp16 on a CPU trial",
    "paged optimizer on CPU",
    "qlora with a GPU on a CPU machine",
    "keep no checkpoints",
    "unknown scheduler",
    "unknown benchmark",
    "missing data file",
    "row without response",
    "malformed JSON line",
    "CSV without output",
    "not UTF-8",
    "empty train file",
    "unknown extension",
    "field_f1 on plain text",
    "held-out rows in train",
    "unknown column",
    "mapping to an absent column",
    "mapping not a mapping",
    "rows of two shapes",
    "row in no shape",
    "one-row training file",
    "held-out set too small",
    "prepare leaves no row",
    "sequence_len too short",
    "unknown model id",
    "model dir without weights",
    "blank model id",
    "unknown target module",
    "unknown module in a searched target set",
    "name escapes (..)",
    "name absolute",
    "name with NUL",
    "config name escapes",
    "resume unknown sweep",
]


@pytest.fixture(scope="module")
def table(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bad")
    cases = all_cases(Table(tiny_model, tmp))
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "LORA_SWEEP_CACHE": str(tmp / "cache"),
        "PYTHONPATH": str(REPO),
    }
    argv = {name: argv for name, (argv, _) in cases.items()}
    argv |= {f"validate: {name}": ["validate", command[1]] for name, command in argv.items()
             if validated(command)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(argv)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=env,
        timeout=600,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("TABLE")), None)
    assert line is not None, done.stderr[-3000:]
    return {"tmp": tmp, "cases": cases, "results": json.loads(line.removeprefix("TABLE"))}


def validated(argv: list[str]) -> bool:
    """A launch of a config (not of a bad --name): `sweep validate` must refuse it the same way."""
    return argv[0] == "launch" and argv[2:] == ["--name", "bad"]


def test_the_table_has_30_or_more_cases(table: dict[str, Any]) -> None:
    assert sorted(table["cases"]) == sorted(CASES) and len(CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_before_compute(case: str, table: dict[str, Any]) -> None:
    _, expected = table["cases"][case]
    result = table["results"][case]
    lines = [x for x in result["stderr"].splitlines() if x.strip()]
    assert result["rc"] == 2, result
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    assert result["imported"] == [], f"{case} imported {result['imported']}"  # no Ray started


NOT_CONFIGS = ("name escapes (..)", "name absolute", "name with NUL", "resume unknown sweep")


@pytest.mark.parametrize("case", [c for c in CASES if c not in NOT_CONFIGS])
def test_validate_refuses_what_launch_refuses_with_the_same_line(
    case: str, table: dict[str, Any]
) -> None:
    argv, _ = table["cases"][case]
    assert validated(argv)
    launched = table["results"][case]
    checked = table["results"][f"validate: {case}"]
    assert checked["rc"] == 2, checked
    assert checked["stderr"].strip() == launched["stderr"].strip()
    assert checked["imported"] == []


def test_no_case_left_anything_in_mlflow_or_the_sweeps_directory(table: dict[str, Any]) -> None:
    tmp = table["tmp"]
    assert nothing_reached_mlflow(tmp)
    assert not (tmp / "sweeps").exists() or not any((tmp / "sweeps").iterdir())
    assert not list(tmp.glob("**/optuna.db")) and not list(Path("/tmp").glob("evil*"))


def test_the_untouched_store_check_sees_a_write(tmp_path: Path, tiny_model: Path) -> None:
    """nothing_reached_mlflow, which the refusal tests lean on, tells the copied empty store
    from one an experiment was written to."""
    from mlflow.tracking import MlflowClient

    data = {"train": tmp_path / "t.jsonl", "heldout": tmp_path / "h.jsonl"}
    config = tiny_sweep_config(tiny_model, data, tmp_path)
    assert (tmp_path / "mlruns" / "mlflow.db").is_file() and nothing_reached_mlflow(tmp_path)
    MlflowClient(config["tracking"]["mlflow_uri"]).create_experiment("written")
    assert not nothing_reached_mlflow(tmp_path)
