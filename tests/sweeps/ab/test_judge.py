"""``sweep serve`` and ``sweep judge`` end to end, with no canned server: the judge is a real
LoRA adapter on the tiny model, trained here to answer "Verdict: first" to anything (a judge with
pure position bias), served by ``sweep serve`` and called through the ``openai`` client. Then the
gate with ``require: judge``, and the A/B report's judge and human sections in Chromium."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.judge import judge_messages
from sweeps.ab.evidence import evidence_path, load_evidence
from sweeps.ab.judge import judge_settings
from sweeps.ab.judge_pairs import judge_pair
from sweeps.cli.main import main
from sweeps.config import JudgeConfig
from sweeps.serving.sides import pair_key, resolve_side
from tests.sweeps.conftest import (
    FinishedSweep,
    dump_dom,
    free_port,
    shared_cache,
    visible_text,
    wait_until_up,
)

KEY_ENV = "TEST_JUDGE_SERVE_KEY"
ALWAYS = "Verdict: first"


# --------------------------------------------------------------------------- the served judge
def judge_prompts() -> list[list[dict[str, str]]]:
    """Judge questions on the embedded task's rows, as the judge is asked them: answers that are
    JSON, or the blank lines the untrained tiny model writes."""
    from tests.conftest import DATA

    rows = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()[:12]]
    rubric = judge_settings(JudgeConfig(model="x")).rubric
    answers = [lambda r: r["output"], lambda r: "\n" * 256, lambda r: "\n" * 40]
    return [judge_messages(f"system: You turn notes into JSON records.\n\nuser: {r['input']}",
                           first=answers[i % 3](r), second=answers[(i // 3) % 3](r),
                           reference=r["output"] if i % 2 else "", rubric=rubric)
            for i, r in enumerate(rows)]  # fmt: skip


def train_constant_adapter(base: Path, out: Path, *, answer: str, steps: int = 40) -> Path:
    """A LoRA adapter that answers ``answer`` to any judge question (about 10 s)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))  # fmt: skip
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
             for m in judge_prompts()]  # fmt: skip
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    target = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    length = max(map(len, prompts)) + len(target)
    ids = torch.full((len(prompts), length), tokenizer.pad_token_id)
    labels, mask = torch.full_like(ids, -100), torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        sequence = prompt + target
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        labels[row, len(prompt) : len(sequence)] = torch.tensor(target)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def served(
    tiny_model: Path, ab_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """``sweep serve judge=<always-first adapter> champion base`` on loopback, with a key."""
    tmp = tmp_path_factory.mktemp("served")
    adapter = train_constant_adapter(tiny_model, tmp / "always-first", answer=ALWAYS)
    port, log = free_port(), tmp / "serve.log"
    env = {**os.environ, KEY_ENV: "k3y-never-printed"}
    state_dir = str(ab_sweep.state.path.parent)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeps.cli.main", "serve", f"judge={adapter}", "champion", "base",
             "--port", str(port), "--api-key-env", KEY_ENV, "--engine", "transformers",
             "--context-tokens", "4096",  # the tiny model's config says 512; a judge asks more
             "--state-dir", state_dir, "--mlflow-uri", ab_sweep.uri],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/health", proc=proc, log=log)
    with pytest.MonkeyPatch.context() as patch:  # the judge's client reads the key here too
        patch.setenv(KEY_ENV, env[KEY_ENV])
        yield {"url": f"{url}/v1", "proc": proc, "log": log, "key": env[KEY_ENV],
               "state_dir": state_dir, "adapter": adapter}  # fmt: skip
    proc.terminate()
    proc.wait(timeout=30)


def judge_flags(served: dict[str, Any], model: str = "judge") -> list[str]:
    return ["--judge-url", served["url"], "--judge-model", model, "--judge-key-env", KEY_ENV]


def test_serve_answers_the_openai_client_on_loopback_only(served: dict[str, Any]) -> None:
    import openai
    import psutil

    client = openai.OpenAI(base_url=served["url"], api_key=served["key"])
    assert {m.id for m in client.models.list()} == {"judge", "champion", "base"}
    reply = client.chat.completions.create(
        model="judge", messages=[{"role": "user", "content": "Which is better, 1 or 2?"}]
    )
    assert reply.choices[0].message.content == ALWAYS
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens > 0
    champion = client.chat.completions.create(
        model="champion", messages=[{"role": "user", "content": "note: Ann, ann@x.org"}],
        max_tokens=5,
    )  # fmt: skip
    assert champion.usage.completion_tokens <= 5
    chunks = client.chat.completions.create(
        model="judge", messages=[{"role": "user", "content": "Which?"}], stream=True
    )  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ALWAYS
    parts = client.chat.completions.create(model="judge", messages=[
        {"role": "developer", "content": "Judge."},
        {"role": "user", "content": [{"type": "text", "text": "Which?"}]}])  # fmt: skip
    assert parts.choices[0].message.content == ALWAYS
    with pytest.raises(openai.BadRequestError, match="tools is not supported"):
        client.chat.completions.create(model="judge", messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="judge", temperature=9,
                                       messages=[{"role": "user", "content": "x"}])  # fmt: skip
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served["url"], api_key="wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    listening = [c.laddr for c in psutil.Process(served["proc"].pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]  # fmt: skip
    assert listening and all(address.ip == "127.0.0.1" for address in listening), listening
    assert served["key"] not in served["log"].read_text()


def test_an_always_first_judge_is_a_tie_with_no_self_agreement(
    served: dict[str, Any], ab_sweep: FinishedSweep, capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    state = ab_sweep.state
    command = ["judge", "ab", "base", "--state-dir", served["state_dir"], "--mlflow-uri",
               ab_sweep.uri, *judge_flags(served)]  # fmt: skip
    with shared_cache(tmp_path_factory):
        assert main(command) == 0
        first = capsys.readouterr().out
        assert main(command) == 0
        second = capsys.readouterr().out
    rows = 12
    assert f"A won 0, tied {rows}, lost 0 of {rows}" in first
    assert f"self-agreement across the two orders: 0% of {rows} rows" in first
    assert f"asked {2 * rows}, from the cache 0" in first
    assert (
        f"position bias: 100% of {2 * rows} decisive verdicts chose the answer shown first" in first
    )
    assert f"asked 0, from the cache {2 * rows}" in second  # the cache asks nothing again
    sides = [resolve_side(r, state_dir=state.path.parent, mlflow_uri=ab_sweep.uri)
             for r in ("ab", "base")]  # fmt: skip
    evidence = load_evidence(state, sides[0], sides[1], "judge")
    assert evidence is not None and set(evidence.outcomes.values()) == {0}
    stored = json.loads(evidence_path(state, pair_key(*sides), "judge").read_text())
    assert stored["history"][0]["run_id"] != evidence.run_id  # the first run, kept
    summary = evidence.summary()
    assert not summary.significant and math.isnan(summary.win_rate)
    run = ab_sweep.client.get_run(evidence.run_id)
    assert run.data.tags["lora_sweep.kind"] == "judge" and run.data.metrics["judge/ties"] == rows
    assert run.data.metrics["judge/self_agreement"] == 0.0
    listed = {a.path for a in ab_sweep.client.list_artifacts(evidence.run_id, "judge")}
    assert "judge/verdicts_table.json" in listed  # the MLflow UI shows it as a table
    verdicts = ab_sweep.client.download_artifacts(evidence.run_id, "judge/verdicts.jsonl")
    lines = [json.loads(x) for x in Path(verdicts).read_text().splitlines()]
    assert len(lines) == rows  # both orders asked, each read: A first said first, B first too
    assert all(v["ab"] == "first" and v["ba"] == "first" and v["outcome"] == 0 for v in lines)


def test_three_sides_are_judged_pair_by_pair_and_ranked(
    served: dict[str, Any], ab_sweep: FinishedSweep, capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """Every pair is judged, then Bradley-Terry: the always-first judge ties everything, so the
    three are equally strong; naming one adapter twice is refused before anything is asked."""
    state = ab_sweep.state
    first, second = (f"ab/{t}" for t in state.trials)
    where = ["--state-dir", served["state_dir"], "--mlflow-uri", ab_sweep.uri]
    with shared_cache(tmp_path_factory):
        assert main(["judge", first, second, "base", "--judge-rows", "4", *where,
                     *judge_flags(served)]) == 0  # fmt: skip
        out = capsys.readouterr().out
        best = state.best_trial().trial_id
        twice = main(["judge", "champion", f"ab/{best}", *where, *judge_flags(served)])
    assert out.count("A won 0, tied 4, lost 0 of 4") == 3  # (1, 2), (1, base), (2, base)
    ranked = out.split("Bradley-Terry strengths")[1].splitlines()[1:4]
    assert sorted(line.split(":")[0].strip() for line in ranked) == sorted([first, second, "base"])
    assert all((": +0.00 [" in line or ": -0.00 [" in line) and "(8 rows)" in line
               for line in ranked), ranked  # fmt: skip
    assert twice == 2 and "are the same weights" in capsys.readouterr().err


def test_unreadable_verdicts_are_counted_not_dropped(
    served: dict[str, Any], ab_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The untrained base model answers blank lines: every verdict is unreadable, and counted."""
    state = ab_sweep.state
    other = next(t for t in state.trials if t != state.best_trial().trial_id)
    settings = judge_settings(JudgeConfig(base_url=served["url"], model="base", rows=3,
                                          max_tokens=8, api_key_env=KEY_ENV))  # fmt: skip
    with shared_cache(tmp_path_factory):
        done = judge_pair(f"ab/{other}", "base", state_dir=state.path.parent,
                          mlflow_uri=ab_sweep.uri, settings=settings, progress=lambda _: None)  # fmt: skip
    assert len(done.run.verdicts) == 3 and done.run.unparsed == 3
    assert done.summary.n == 0 and done.summary.unparsed == 3
    assert "3 without a verdict" in done.lines()[0]
    assert all(v.outcome is None and v.ab is None and v.ba is None for v in done.run.verdicts)


def test_an_in_process_judge_needs_no_endpoint(
    served: dict[str, Any], ab_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No base_url: the judge adapter is loaded in this process (the same verdicts)."""
    state = ab_sweep.state
    settings = judge_settings(JudgeConfig(model=str(served["adapter"]), rows=2, max_tokens=16))
    with shared_cache(tmp_path_factory):
        done = judge_pair("ab", "base", state_dir=state.path.parent, mlflow_uri=ab_sweep.uri,
                          settings=settings, progress=lambda _: None)  # fmt: skip
    assert "in-process" in done.judge and done.run.asked == 4 and done.run.unparsed == 0
    assert [v.outcome for v in done.run.verdicts] == [0, 0]


def test_a_rubric_that_cannot_be_read_is_refused_before_compute(
    tiny_model: Path, small_data: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.conftest import tiny_sweep_config
    from tests.sweeps.conftest import refused_launch

    config = tiny_sweep_config(tiny_model, small_data, tmp_path,
                               judge={"model": "judge", "rubric": "missing-rubric.yaml"})  # fmt: skip
    error = refused_launch(config, tmp_path / "sweep.yaml", capsys)
    assert "judge.rubric" in error and "missing-rubric.yaml" in error and "\n" not in error
    assert not (tmp_path / "sweeps").exists()  # nothing started


def test_the_gate_refuses_when_the_judge_finds_no_significant_preference(
    served: dict[str, Any], ab_sweep: FinishedSweep, capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    state, client = ab_sweep.state, ab_sweep.client
    other = next(t for t in state.trials if t != state.best_trial().trial_id)
    before = client.get_model_version_by_alias("tiny", "champion").version
    with shared_cache(tmp_path_factory):
        code = main(["promote", f"ab/{other}", "--state-dir", served["state_dir"], "--require",
                     "judge", *judge_flags(served)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert "refused: judge: not significantly preferred to champion tiny" in out
    assert "judge: A won 0, tied" in out  # the evidence is printed
    assert client.get_model_version_by_alias("tiny", "champion").version == before


def test_the_report_shows_the_judge_and_the_humans(
    served: dict[str, Any], ab_sweep: FinishedSweep, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    flags = ["--state-dir", served["state_dir"], "--mlflow-uri", ab_sweep.uri]
    ratings = tmp_path / "round1"
    with shared_cache(tmp_path_factory):  # the judge first: the import compares the humans with it
        assert main(["judge", "ab", "base", *flags, *judge_flags(served)]) == 0
        assert main(["human", "export", "ab", "base", "--out", str(ratings), *flags]) == 0
        plant_ratings(ratings, a_wins=10)
        assert main(["human", "import", str(ratings), *flags]) == 0
        out = tmp_path / "report"
        assert main(["compare", "ab", "base", "--judge", "--out", str(out), *flags,
                     *judge_flags(served)]) == 0  # fmt: skip
    text = visible_text(dump_dom((out / "report.html").as_uri()))
    assert "LLM judge (pairwise, both orders)" in text and "Human raters (blind)" in text
    assert "no significant preference: A won 0, tied 12, lost 0 of 12" in text
    assert "A preferred: A won 10, tied 0, lost 2 of 12" in text
    assert "The judge gave the same verdict in both orders on 0% of 12 rows" in text
    assert "Position bias: 100% of 24 decisive verdicts chose the answer shown first" in text
    assert "Cohen's kappa humans vs the judge" in text
    assert "promoting A under this sweep's promote.require (heldout) would refuse" in text
    assert "promote.require: heldout, judge, human" not in text  # only heldout is required
    markdown = (out / "report.md").read_text()
    assert "## Evidence" in markdown and "| human | A preferred" in markdown
    errors = out / "errors" / "errors.md"
    assert errors.is_file() and "errors/errors.md" in (out / "report.html").read_text()


def plant_ratings(directory: Path, *, a_wins: int) -> None:
    """One rater prefers A on the first ``a_wins`` pairs and B on the rest."""
    key = json.loads((directory / "key.json").read_text())
    with (directory / "rater" / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))
    for index, row in enumerate(rows):
        a_left = key["pairs"][row["pair_id"]]["left_is_a"]
        wants_a = index < a_wins
        row["preference"] = "left" if wants_a == a_left else "right"
    (directory / "ratings").mkdir(exist_ok=True)
    with (directory / "ratings" / "ana.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
