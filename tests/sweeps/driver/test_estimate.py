"""The sweep estimate's arithmetic (sweeps/driver/estimate.py) and sweep init's sizing helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.cli.init import parse_budget, sequence_lengths, sweep_name
from sweeps.config import ConfigError, config_from_dict
from sweeps.driver.estimate import asha_milestones, estimate_sweep, expected_rungs, makespan
from trainers.timing import TrialTiming


def Timing() -> TrialTiming:
    return TrialTiming(sequence_len=256, worker_start=5.0, setup=3.0, step=2.0,
                       tokens_per_step=400.0, rung=10.0, steps_timed=4, train_rows=128,
                       steps_per_epoch=32, rungs_per_epoch=2)  # fmt: skip


def config(**sections: object) -> object:
    raw = {"data": {"train": "x.jsonl"}, "search_space": {
        "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-3}, "lora_r": [8],
        "num_epochs": {"type": "int", "low": 1, "high": 2}, "sequence_len": [128, 256]},
        "search": {"num_samples": 6, "max_concurrent": 2}} | sections  # fmt: skip
    return config_from_dict(raw)


def test_makespan_packs_trials_on_the_first_free_slot() -> None:
    assert makespan([10, 10, 10, 10], 2) == 20
    assert makespan([30, 10, 10, 10], 2) == 30
    assert makespan([5], 3) == 5


def test_asha_goes_on_past_each_milestone_with_probability_one_over_the_factor() -> None:
    milestones, factor = asha_milestones(config(), 4)
    assert (milestones, factor) == ([1, 2], 2.0)
    assert expected_rungs(4, milestones, factor, first=True) == 4  # the first is never stopped
    assert expected_rungs(4, milestones, factor, first=False) == 1 + 0.5 + 0.25 * 2
    assert expected_rungs(2, milestones, factor, first=False) == 1 + 0.5
    assert asha_milestones(config(scheduler={"type": "none"}), 4) == ([], 1.0)


def test_estimate_scales_with_trials_tokens_and_concurrency() -> None:
    lengths = [100] * 50 + [300] * 50
    one = estimate_sweep(config(), Timing(), num_samples=6, token_lengths=lengths, cpus=2)
    more = estimate_sweep(config(), Timing(), num_samples=12, token_lengths=lengths, cpus=2)
    alone = estimate_sweep(config(), Timing(), num_samples=6, token_lengths=lengths, cpus=1)
    assert one.concurrency == 2 and alone.concurrency == 1
    assert more.wall_seconds > one.wall_seconds * 1.5
    assert alone.wall_seconds > one.wall_seconds * 1.5
    assert one.device_hours == pytest.approx(alone.device_hours)
    # a rung's steps cost what their tokens cost: sequence_len 128 cuts the long rows
    assert one.tokens_per_trial < one.expected_rungs * 16 * 400
    cached = estimate_sweep(config(), Timing(), num_samples=6, token_lengths=lengths, cpus=2,
                            base_cached=True)  # fmt: skip
    assert one.wall_seconds - cached.wall_seconds == pytest.approx(5 + 3 + 10)


def test_the_benchmarks_after_the_trials_cost_a_share_of_what_the_screening_costs_a_document(
) -> None:  # fmt: skip
    """The driver's documents cost DRIVER_DOCUMENT_SHARE of the timed screening's seconds per
    document; the finalists' looks make the estimate a range, from first looks to all looks."""
    from dataclasses import replace

    from sweeps.driver.estimate import DRIVER_DOCUMENT_SHARE, DriverDocuments

    lengths = [100] * 50 + [300] * 50
    timing = replace(Timing(), benchmark=30.0, benchmark_documents=120)  # 0.25 s a document
    per_document = 0.25 * DRIVER_DOCUMENT_SHARE
    alone = estimate_sweep(config(), timing, num_samples=6, token_lengths=lengths, cpus=2)
    documents = DriverDocuments(least=1200, most=3000)
    after = estimate_sweep(config(), timing, num_samples=6, token_lengths=lengths, cpus=2,
                           driver_documents=documents)  # fmt: skip
    assert after.wall_seconds - alone.wall_seconds == pytest.approx(3000 * per_document)
    assert after.wall_seconds_least - alone.wall_seconds == pytest.approx(1200 * per_document)
    assert after.driver_documents == documents
    assert after.driver_seconds == pytest.approx(3000 * per_document)
    low, high = round(1200 * per_document / 60), round(3000 * per_document / 60)
    assert any(f"1,200 to 3,000 documents, about {low}-{high} min (the fewer if each finalist's "
               "first look settles its verdict)" in line for line in after.lines())  # fmt: skip
    wall = after.lines()[-1]
    assert wall.startswith("estimated wall time: ") and "-" in wall.split(": ", 1)[1].split()[0]
    assert not any("after the trials" in line for line in alone.lines())
    settled = estimate_sweep(config(), timing, num_samples=6, token_lengths=lengths, cpus=2,
                             driver_documents=DriverDocuments(least=3000, most=3000))  # fmt: skip
    line = next(line for line in settled.lines() if "after the trials" in line)
    assert " 3,000 documents, about " in line and "first look" not in line
    assert settled.wall_seconds_least == settled.wall_seconds
    # nothing timed (no benchmarks in the trial): nothing claimed for the driver either
    none = estimate_sweep(config(), Timing(), num_samples=6, token_lengths=lengths, cpus=2,
                          driver_documents=documents)  # fmt: skip
    plain = estimate_sweep(config(), Timing(), num_samples=6, token_lengths=lengths, cpus=2)
    assert none.driver_documents.most == 0 and none.wall_seconds == plain.wall_seconds


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("2h", 7200), ("1h30m", 5400),
                                                ("90s", 90), ("0.5h", 1800)])  # fmt: skip
def test_budgets(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30", "m"])
def test_a_budget_that_is_no_duration_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="give a duration such as 30m"):
        parse_budget(text)


def test_sequence_lengths_come_from_the_rows_percentiles() -> None:
    lengths = list(range(1, 101))  # p90 = 90 -> 128, longest 100 -> 128
    assert sequence_lengths(lengths, limit=2048) == [128]
    assert sequence_lengths([*[50] * 95, 700, 800, 900, 1000, 3000], limit=2048) == [64, 2048]


def test_names_from_files_are_safe() -> None:
    assert sweep_name(Path("My Data (v2).jsonl")) == "my-data-v2"
    assert sweep_name(Path("../x/../..csv")) == "sweep"


def test_init_writes_a_loss_objective_for_plain_text(tmp_path: Path) -> None:
    """Plain text has nothing to generate and compare: the YAML optimises held-out loss, and it
    passes the schema."""
    import yaml

    from sweeps.cli.init import DataFacts, InitRequest, render_yaml
    from sweeps.config import load_config

    facts = DataFacts(name="stories", shape="text", train_rows=60, heldout_rows=20,
                      val_set_size=0.25, task_metric="none", sequence_len=[128],
                      lengths="p50 40, p90 60, max 70 tokens", target_modules=["q_proj"],
                      gpu=False)  # fmt: skip
    out = tmp_path / "stories.yaml"
    out.write_text(render_yaml(InitRequest(data=tmp_path / "stories.jsonl"), facts, out=out,
                               num_samples=4, epochs=(1, 2)))  # fmt: skip
    assert yaml.safe_load(out.read_text())["objective"] == {"metric": "heldout/loss", "mode": "min"}
    assert load_config(out).search.num_samples == 4
