"""The CLI: --help and validate import no torch (the bad-input table is test_bad_input.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from sweeps.cli.main import build_parser, main
from sweeps.cli.options import StatusOptions
from tests.conftest import REPO, nothing_reached_mlflow

PROBE = """
import json, sys
from sweeps.cli.main import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = [m for m in ("torch", "ray", "mlflow", "transformers", "peft", "lm_eval") if m in sys.modules]
print("PROBE" + json.dumps({"rc": rc, "heavy": heavy}))
"""


def run_cli(*args: str, cwd: Path = REPO) -> tuple[dict[str, Any], str, str]:
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "LORA_SWEEP_CACHE": str(cwd / ".cache-test"),
        "HOME": str(cwd),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE"))
    return json.loads(line.removeprefix("PROBE")), done.stdout, done.stderr


@pytest.mark.parametrize(
    "verb",
    [
        None,
        "launch",
        "validate",
        "status",
        "best",
        "eval",
        "export",
        "promote",
        "compare",
        "ui",
        "dashboard",
        "data",
        "resume",
        "init",
    ],
)
def test_help_imports_no_heavy_library(verb: str | None) -> None:
    probe, out, _ = run_cli(*([verb] if verb else []), "--help")
    assert probe["rc"] == 0 and probe["heavy"] == []
    assert "usage: sweep" in out


def every_verb() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """Each verb's words and parser, ``data prepare`` included, walked from the real parser."""
    found: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(words: list[str], parser: argparse.ArgumentParser) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if words and not subparsers:
            found.append((words, parser))
        for action in subparsers:
            for name, child in action.choices.items():
                walk([*words, name], child)

    walk([], build_parser())
    return found


def test_every_verb_has_a_description_an_example_and_each_options_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    verbs = every_verb()
    assert {" ".join(w) for w, _ in verbs} >= {"launch", "status", "ui", "dashboard",
                                                "data prepare", "compare", "init"}  # fmt: skip
    for words, parser in verbs:
        with pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        assert exited.value.code == 0
        text = capsys.readouterr().out
        usage, _, rest = text.partition("\n\n")
        description = rest.split("\n\n")[0]
        assert usage.startswith(f"usage: sweep {' '.join(words)}") and len(description) > 30, words
        examples = text.split("examples:\n", 1)[1].splitlines()
        assert examples and all(e.startswith(f"  sweep {words[0]}") for e in examples), words
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            shown = formatter._get_help_string(action) or ""
            assert "default" in shown or (action.required and shown.endswith("(required)")), (
                words, action.option_strings)  # fmt: skip
            assert " ".join(shown.split())[:40] in " ".join(text.split()), (words, shown)


def test_every_verbs_arguments_are_the_fields_of_its_options_model() -> None:
    """The parser restates nothing: each verb's arguments are its function's options model's
    fields, with their defaults, descriptions and flag names."""
    from sweeps.cli.arguments import flag_name, options_model
    from sweeps.config import PrepareConfig

    for words, parser in every_verb():
        function, model = parser.get_default("run").args
        assert model is options_model(function), words
        actions = {a.dest: a for a in parser._actions if a.dest != "help"}
        assert set(actions) == set(model.model_fields), words
        for name, field in model.model_fields.items():
            action, positional = actions[name], field.json_schema_extra == {"positional": True}
            assert (field.description or "").rstrip(".") in (action.help or ""), (words, name)
            if not positional:
                assert action.option_strings[0] == flag_name(name, field), (words, name)
            if field.is_required():
                assert action.required or (positional and action.nargs != "*"), (words, name)
            else:
                assert action.default == field.get_default(call_default_factory=True), (words, name)
        if words == ["data", "prepare"]:  # the YAML's prepare: section, field for field
            assert issubclass(model, PrepareConfig)
            assert set(PrepareConfig.model_fields) < set(actions)


def test_the_state_dir_and_mlflow_uri_defaults_are_the_schemas() -> None:
    from sweeps.config import Tracking

    parser = build_parser()
    status = parser.parse_args(["status", "s"])
    assert status.state_dir == Path(Tracking().state_dir)
    assert parser.parse_args(["ui"]).mlflow_uri == Tracking().mlflow_uri
    assert parser.parse_args(["launch", "x.yaml"]).state_dir is None  # the YAML's, at launch


class VerboseStatus(StatusOptions):
    rows: int = Field(5, description="rows shown")
    wide: bool = Field(False, description="every column")


def test_a_field_added_to_an_options_model_is_a_new_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sweeps.cli.main as cli
    import sweeps.cli.verbs_sweep as verbs

    monkeypatch.setattr(verbs, "StatusOptions", VerboseStatus)  # what status() is annotated with
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    text = capsys.readouterr().out
    assert "--rows ROWS" in text and "rows shown (default: 5)" in text
    assert "--wide, --no-wide" in text and "every column (default: off)" in text
    seen: list[VerboseStatus] = []

    def status(options: VerboseStatus) -> int:
        seen.append(options)
        return 0

    verbs_with_ours = tuple((name, status if name == "status" else run) for name, run in cli.VERBS)
    monkeypatch.setattr(cli, "VERBS", verbs_with_ours)
    assert main(["status", "s1", "--rows", "7", "--wide", "--state-dir", "elsewhere"]) == 0
    assert seen == [VerboseStatus(sweep="s1", rows=7, wide=True, state_dir=Path("elsewhere"))]


def test_data_prepare_flags_parse_into_its_options_model() -> None:
    from sweeps.cli.arguments import options_from_namespace
    from sweeps.cli.options import DataPrepareOptions

    args = build_parser().parse_args(["data", "prepare", "a.jsonl", "b.csv", "--out", "o",
                                      "--keep-flagged", "--no-clean", "--benchmarks", "mmlu,arc_easy",
                                      "--columns", "instruction=q,output=a", "--format", "dolly"])  # fmt: skip
    options = options_from_namespace(DataPrepareOptions, args)
    assert options == DataPrepareOptions(
        inputs=(Path("a.jsonl"), Path("b.csv")), out_dir=Path("o"), drop_flagged=False,
        clean=False, benchmarks=("mmlu", "arc_easy"), columns={"instruction": "q", "output": "a"},
        format="dolly",
    )  # fmt: skip
    assert options_from_namespace(
        DataPrepareOptions, build_parser().parse_args(["data", "prepare", "--out", "o", "--drop-flagged"])
    ).drop_flagged  # fmt: skip


def test_a_bare_sweep_prints_the_help_and_version_prints_the_package_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from importlib.metadata import version

    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sweep") and "the usual path:" in out and "dashboard" in out
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sweep {version('lora-sweep')}"
    assert main(["data"]) == 0 and "prepare" in capsys.readouterr().out


def test_the_help_fits_80_columns_with_every_command_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    usual = out.split("the usual path:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    commands = [line.strip() for line in usual if line.strip().startswith("sweep ")]
    assert "sweep judge champion base --judge-url URL --judge-model M" in commands
    assert len(commands) == 10 and all(not c.endswith(("--", "\\")) for c in commands)


def test_validate_prints_the_resolved_config_without_torch() -> None:
    probe, out, _ = run_cli("validate", "--quick", "search_spaces/lora.yaml")
    assert probe["rc"] == 0 and probe["heavy"] == []
    resolved = yaml.safe_load(out.split("# search space")[0])
    assert resolved["base_model"] == "smollm2-135m-instruct"
    assert resolved["training"]["micro_batch_size"] == 4
    lr = yaml.safe_load((REPO / "search_spaces/lora.yaml").read_text())["search_space"][
        "learning_rate"
    ]
    assert f"#   learning_rate: loguniform({lr['low']:g}, {lr['high']:g})" in out


def test_validate_reports_errors_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  train: x.jsonl\nsearch_space:\n  lora_r: []\n")
    probe, _, err = run_cli("validate", str(bad))  # the schema is checked before any import
    assert probe["rc"] == 2 and probe["heavy"] == []
    assert (
        err.strip()
        == f"error: {bad}:4: search_space.lora_r: choice list is empty: give at least one value"
    )


def test_validate_is_a_dry_run_of_launch_that_ends_with_the_plan(
    tiny_model: Path, tmp_path: Path
) -> None:
    from tests.conftest import slice_embedded_data, tiny_sweep_config

    data = slice_embedded_data(tmp_path, train=32, heldout=20)
    config = tiny_sweep_config(tiny_model, data, tmp_path)
    config["data"]["allow_small"] = False  # 32 and 20 rows: the floors, met
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    probe, out, err = run_cli("validate", str(path), cwd=tmp_path)
    assert probe["rc"] == 0, err
    assert "ray" not in probe["heavy"] and "mlflow" not in probe["heavy"]  # no Ray, no MLflow run
    assert "shape alpaca" in out and "sequence_len 128: 0 of 32 training rows truncated" in out
    plan = out.split("Plan:")[1]
    assert "trials: 4, 2 at a time; rungs: up to 4 per trial" in plan
    assert "search: tpe, TPE (Optuna's Bayesian default); 4 trials, seed 3" in plan
    assert "objective: heldout/field_f1 (max)" in plan
    assert "stopping: ASHA on the held-out rungs (of 4): every trial runs 1 rung(s)" in plan
    assert "estimated wall time:" in plan and "device-hours" in plan
    assert out.split("PROBE")[0].rstrip().endswith(f"{path}: valid; run it: sweep launch {path}")
    assert not (tmp_path / "sweeps").exists() and nothing_reached_mlflow(tmp_path)
