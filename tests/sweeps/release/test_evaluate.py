"""`sweep eval`: benchmarks for any model (+ adapter) outside a sweep, logged as one MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeps.cli.main import main
from sweeps.release.evaluate import _load
from tests.evals.test_benchmarks import ARC_ROWS, write_rows


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    root.mkdir()
    write_rows(root / "arc_challenge_test.jsonl", ARC_ROWS)
    return root


def eval_args(model: Path, mirror: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "eval",
        str(model),
        "--tasks",
        "arc_challenge",
        "--mirror",
        str(mirror),
        "--num-fewshot",
        "0",
        "--batch-size",
        "4",
        "--mlflow-uri",
        f"sqlite:///{tmp_path / 'mlruns.db'}",
        *extra,
    ]


def test_eval_logs_one_run_with_lm_eval_metrics_and_samples(
    tiny_model: Path, mirror: Path, tmp_path: Path
) -> None:
    assert main(eval_args(tiny_model, mirror, tmp_path)) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("lora-sweep-evals").experiment_id])
    assert run.data.tags["lora_sweep.kind"] == "eval" and run.data.tags["git.commit"]
    assert {
        "bench/full/arc_challenge/acc",
        "bench/full/arc_challenge/acc_norm",
        "bench/full/seconds",
    } <= set(run.data.metrics)
    assert run.data.params["adapter"] == "none" and run.data.params["eval.batch_size"] == "4"
    samples = Path(client.download_artifacts(run.info.run_id, "samples/arc_challenge.jsonl"))
    assert len(samples.read_text().splitlines()) == len(ARC_ROWS)
    config = json.loads(
        Path(client.download_artifacts(run.info.run_id, "eval_config.json")).read_text()
    )
    assert config["tasks"] == ["arc_challenge"]


def test_adapter_is_applied(tiny_model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft.save_pretrained(tmp_path / "adapter")
    base, tokenizer = _load(tiny_model, None, trust_remote_code=False)
    tuned, _ = _load(tiny_model, tmp_path / "adapter", trust_remote_code=False)
    ids = torch.tensor([tokenizer("Question: 1 plus 1?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, tuned(input_ids=ids).logits)


def test_offline_without_data_fails_up_front(
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LORA_SWEEP_BENCHMARK_MIRROR", raising=False)
    args = [
        "eval",
        str(tiny_model),
        "--tasks",
        "hellaswag",
        "--mlflow-uri",
        f"sqlite:///{tmp_path / 'x.db'}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "benchmark data cannot be had: hellaswag: the Hugging Face Hub is offline" in err
    assert "LORA_SWEEP_BENCHMARK_MIRROR" in err
    assert not (tmp_path / "x.db").exists()


def test_unknown_task_and_bad_adapter_are_refused(
    tiny_model: Path, mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = eval_args(tiny_model, mirror, tmp_path)
    args[args.index("arc_challenge")] = "arc_chalenge"
    assert main(args) == 2
    assert "unknown lm-eval task(s): arc_chalenge" in capsys.readouterr().err
    assert main(eval_args(tiny_model, mirror, tmp_path, "--adapter", str(tmp_path))) == 2
    assert "not a PEFT adapter" in capsys.readouterr().err
    assert not (tmp_path / "mlruns.db").exists()
