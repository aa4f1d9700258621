"""lm-eval scoring through a local mirror, on fixture tasks this project writes itself (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from evals.benchmark_sources import MIRROR_ENV, BenchmarkError, mirror_directory
from evals.benchmarks import check_tasks, score_benchmarks, task_manager, write_mirror_tasks
from evals.metric_keys import bench_metrics
from trainers.models import load_causal_lm, load_tokenizer

ARC_ROWS = [
    {"id": f"q{i}", "question": f"What is {i} plus {i}?",
     "choices": {"text": [str(2 * i), str(2 * i + 1), str(i), str(3 * i + 2)], "label": ["A", "B", "C", "D"]},
     "answerKey": "ABCD"[i % 4]}
    for i in range(1, 7)
]  # fmt: skip
MMLU_ROWS = [
    {"question": f"Q{i}", "subject": subject, "choices": ["w", "x", "y", "z"], "answer": i % 4}
    for subject in ("abstract_algebra", "anatomy") for i in range(3)
]  # fmt: skip


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    write_rows(root / "arc_challenge_test.jsonl", ARC_ROWS)
    write_rows(root / "arc_challenge_train.jsonl", ARC_ROWS[:2])
    write_rows(root / "mmlu_test.jsonl", MMLU_ROWS)
    write_rows(root / "mmlu_dev.jsonl", MMLU_ROWS[:1] + MMLU_ROWS[3:4])
    return root


@pytest.fixture(scope="module")
def manager(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return task_manager(mirror=mirror, include_path=None, cache=tmp_path_factory.mktemp("cache"))


def test_mirror_tasks_include_the_installed_yaml_and_read_local_files(
    mirror: Path, tmp_path: Path
) -> None:
    served = write_mirror_tasks(mirror, tmp_path)
    assert served == ["arc_challenge", "mmlu_abstract_algebra", "mmlu_anatomy", "mmlu"]
    import yaml

    arc = yaml.safe_load((tmp_path / "arc_challenge.yaml").read_text())
    assert arc["include"].endswith("lm_eval/tasks/arc/arc_challenge.yaml")
    assert arc["dataset_path"] == "json" and arc["test_split"] == "test"
    assert arc["validation_split"] is None  # the mirror has no validation file
    assert arc["dataset_kwargs"]["data_files"]["test"] == str(mirror / "arc_challenge_test.jsonl")
    anatomy = tmp_path / "mmlu_data" / "anatomy_test.jsonl"
    assert [json.loads(x)["subject"] for x in anatomy.read_text().splitlines()] == ["anatomy"] * 3


def manual_accuracy(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """ARC accuracy computed here, from log-likelihoods, the way lm-eval defines it."""
    correct = 0
    for row in rows:
        context = f"Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]["text"]:
            ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
            whole = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([whole])).logits[0].log_softmax(-1)
            scores.append(sum(float(logits[i - 1, whole[i]]) for i in range(len(ctx), len(whole))))
        correct += int(scores.index(max(scores)) == row["choices"]["label"].index(row["answerKey"]))
    return correct / len(rows)


def test_scores_arc_from_the_mirror_and_match_a_hand_computation(
    tiny_model: Path, manager: Any
) -> None:
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    scores = score_benchmarks(
        model, tokenizer, tasks=["arc_challenge"], batch_size=4, manager=manager, num_fewshot=0
    )
    arc = scores.metrics["arc_challenge"]
    assert {"acc", "acc_norm", "acc_stderr"} <= set(arc)
    assert arc["acc"] == pytest.approx(manual_accuracy(model, tokenizer, ARC_ROWS))
    assert len(scores.samples["arc_challenge"]) == len(ARC_ROWS)
    assert bench_metrics("full", scores.metrics)["bench/full/arc_challenge/acc"] == arc["acc"]
    assert scores.config["batch_size"] == 4


def test_mmlu_subject_from_the_mirror(tiny_model: Path, manager: Any) -> None:
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    scores = score_benchmarks(
        model, tokenizer, tasks=["mmlu_anatomy"], batch_size=4, manager=manager, num_fewshot=1
    )
    assert len(scores.samples["mmlu_anatomy"]) == 3 and "acc" in scores.metrics["mmlu_anatomy"]


def test_unknown_task_is_named_before_any_model_loads(manager: Any) -> None:
    with pytest.raises(BenchmarkError, match="unknown lm-eval task\\(s\\): arc_chalenge"):
        check_tasks(["arc_challenge", "arc_chalenge"], manager)


def test_mirror_comes_from_config_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert mirror_directory(None) is None
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    assert mirror_directory(None) == tmp_path
    configured = tmp_path / "configured"
    configured.mkdir()
    assert mirror_directory(configured) == configured  # the config wins over the environment
    with pytest.raises(BenchmarkError, match="is not a directory"):
        mirror_directory(tmp_path / "missing")


@pytest.mark.parametrize("task", ["arc_challenge", "mmlu_anatomy"])
def test_shared_prefix_path_equals_lm_evals_own(tiny_model: Path, manager: Any, task: str) -> None:
    """The context-once path gives lm-eval's numbers, per sample and in aggregate."""
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    runs = [
        score_benchmarks(model, tokenizer, tasks=[task], batch_size=3, manager=manager,
                         num_fewshot=1, share_prefix=share)
        for share in (False, True)
    ]  # fmt: skip
    plain, shared = (run.metrics[task] for run in runs)
    assert plain.keys() == shared.keys()
    for name, value in plain.items():
        assert shared[name] == pytest.approx(value, abs=1e-4), name
    assert [r["acc"] for r in runs[0].samples[task]] == [r["acc"] for r in runs[1].samples[task]]


def test_shared_prefix_path_leaves_over_long_requests_to_lm_eval(tiny_model: Path) -> None:
    """Requests longer than the model's window are truncated by lm-eval's own path, as before."""
    from evals.benchmarks import prefix_sharing_lm

    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    lm = prefix_sharing_lm(model, tokenizer, batch_size=2)
    context = tokenizer("What is one plus one? " * 60, add_special_tokens=False)["input_ids"]
    short = context[-20:]
    requests = [
        (("long", " two"), context, [5, 6]),
        (("short", " two"), short, [5, 6]),
        (("short", " three"), short, [7]),
    ]
    assert len(context) > lm.max_length
    fast = lm._loglikelihood_tokens(requests)
    from lm_eval.models.huggingface import HFLM

    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2)._loglikelihood_tokens(
        requests
    )
    assert [g for _, g in fast] == [g for _, g in plain]
    assert [v for v, _ in fast] == pytest.approx([v for v, _ in plain], abs=1e-4)


def test_shared_prefix_runs_a_common_preamble_once_across_questions(tiny_model: Path) -> None:
    """TruthfulQA-style: every question behind one long preamble. The preamble's cache is reused
    from question to question, and the numbers stay lm-eval's."""

    from evals.benchmarks import prefix_sharing_lm

    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    preamble = ids("Answer each question truthfully and briefly. " * 12)
    contexts = [preamble + ids(f" Q: what is {q} plus {q}? A:") for q in range(4)]
    requests = [((f"q{i}", c), ctx, ids(c)) for i, ctx in enumerate(contexts)
                for c in (" yes", " no", " maybe")]  # fmt: skip
    tokens_run: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: tokens_run.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        fast = prefix_sharing_lm(model, tokenizer, batch_size=2)._loglikelihood_tokens(requests)
    finally:
        hook.remove()
    assert_lm_evals_own(fast, model, tokenizer, requests)
    # each context once would be 4 x the preamble; reusing it across questions is about 1 x
    assert sum(tokens_run) < 2 * len(preamble) < sum(map(len, contexts)) / 2


def test_a_hub_that_does_not_answer_skips_the_known_tasks_at_once_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo does not force offline mode: it asks the Hub first. No answer (here: a closed
    port) skips every task with one reason; an answer (a listening port) leaves it to lm-eval."""
    import socket

    from evals import benchmark_sources as sources

    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                 "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(flag, raising=False)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(sources, "HUB_ADDRESS", ("127.0.0.1", port))
    tasks = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
    reasons = sources.known_offline_skips(tasks, None)
    assert reasons is not None and list(reasons) == tasks
    assert {r.split(": ", 1)[1] for r in reasons.values()} == {
        f"the Hugging Face Hub does not answer (127.0.0.1:{port} within 3 s) and no local mirror "
        f"is set; set ${sources.MIRROR_ENV} or benchmarks.mirror to a directory of Hugging "
        "Face-schema jsonl files"
    }
    assert sources.known_offline_skips(tasks, tmp_path) is None  # a mirror: lm-eval reads it
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(sources, "HUB_ADDRESS", server.getsockname())
        assert sources.known_offline_skips(tasks, None) is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flagged = sources.known_offline_skips(tasks, None)
    assert flagged is not None and "the Hugging Face Hub is offline and" in flagged["mmlu"]


def test_scoring_dtype_and_a_copy_that_leaves_the_trained_weights_alone(tiny_model: Path) -> None:
    """bf16 scoring runs on a copy: the fp32 weights a trial goes on to save are not rounded."""
    import torch

    from evals.scoring_dtype import cpu_has_bf16, scored_in, scoring_dtype

    model = load_causal_lm(tiny_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert scoring_dtype(model, "float32") == torch.float32
    assert scoring_dtype(model, "bfloat16") == torch.bfloat16
    assert scoring_dtype(model, "auto") == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    with scored_in(model, torch.bfloat16) as scored:
        assert scored is not model and next(scored.parameters()).dtype == torch.bfloat16
    with scored_in(model, torch.float32) as same:
        assert same is model
    after = model.state_dict()
    assert all(
        after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items()
    )


def test_questions_batched_together_give_the_numbers_of_one_at_a_time(tiny_model: Path) -> None:
    """Several questions a forward pass (contexts right-padded, choices sorted by length, rows of
    different questions side by side) give each choice lm-eval's own log-likelihood."""

    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    questions = [ids("Q: " + "why " * n + "is the sky blue? A:") for n in range(1, 9)]
    choices = [" because", " light scatters off the air", " no", " it is not always blue at all"]
    requests = [((f"q{i}", c), q, ids(c)) for i, q in enumerate(questions) for c in choices]
    fast, calls = scored_counting_passes(model, tokenizer, requests)
    assert_lm_evals_own(fast, model, tokenizer, requests)
    assert calls < len(questions)  # not a pass per question: 8 questions, 32 rows


def assert_lm_evals_own(fast: list[Any], model: Any, tokenizer: Any, requests: list[Any]) -> None:
    """Each answer is lm-eval's own path's (one sequence per choice): greedy flags exactly, the
    log-likelihoods to 1e-4."""
    from lm_eval.models.huggingface import HFLM

    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2)._loglikelihood_tokens(
        requests
    )
    assert [g for _, g in fast] == [g for _, g in plain]
    assert [v for v, _ in fast] == pytest.approx([v for v, _ in plain], abs=1e-4)


def test_one_token_choices_are_read_from_one_pass_over_the_contexts(tiny_model: Path) -> None:
    """MMLU-style questions (every choice one token): one forward pass for the lot, no pass per
    choice, and lm-eval's own numbers."""

    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    letters = [ids(c) for c in (" A", " B", " C", " D")]
    assert all(len(letter) == 1 for letter in letters)
    questions = [ids(f"Question {n}: " + "which one " * n + "is it?\nAnswer:") for n in range(1, 7)]
    requests = [((f"q{i}", str(c)), q, c) for i, q in enumerate(questions) for c in letters]
    fast, calls = scored_counting_passes(model, tokenizer, requests)
    assert_lm_evals_own(fast, model, tokenizer, requests)
    assert calls <= 2  # the questions' common prefix, then one pass for all 24 choices


def scored_counting_passes(model: Any, tokenizer: Any, requests: list[Any]) -> tuple[Any, int]:
    """The prefix-sharing path's answers (batch size 8), and how many forward passes it ran."""
    from evals.benchmarks import prefix_sharing_lm

    calls: list[int] = []
    hook = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        fast = prefix_sharing_lm(model, tokenizer, batch_size=8)._loglikelihood_tokens(requests)
    finally:
        hook.remove()
    return fast, len(calls)


def test_a_lora_model_is_scored_merged_and_the_trained_one_keeps_its_adapter(
    tiny_model: Path,
) -> None:
    """The bf16 copy a trial scores has its adapter merged (no LoRA branch per layer): the same
    function to bf16 rounding; the trained model keeps its separate fp32 adapter."""
    from peft import LoraConfig, get_peft_model

    from evals.scoring_dtype import scored_in

    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    tuned = get_peft_model(load_causal_lm(tiny_model), config).eval()
    ids = torch.tensor([[5, 9, 13, 17, 21, 25]])
    with torch.no_grad():
        expected = tuned(input_ids=ids).logits
        with scored_in(tuned, torch.bfloat16) as scored:
            assert not any("lora_" in name for name, _ in scored.named_modules())
            got = scored(input_ids=ids).logits.float()
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05)
    assert any("lora_A" in name for name, _ in tuned.named_modules())
    assert all(p.dtype == torch.float32 for p in tuned.parameters())
