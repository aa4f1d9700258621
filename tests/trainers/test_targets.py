"""lora_target_modules presets resolved per architecture, from layer names alone (no torch)."""

from __future__ import annotations

import pytest

from trainers.targets import join_targets, resolve_targets, split_targets, unknown_targets

LLAMA = [f"model.layers.{i}.{block}.{name}" for i in range(2) for block, names in
         (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
          ("mlp", ("gate_proj", "up_proj", "down_proj"))) for name in names] + ["lm_head"]  # fmt: skip
ATTENTION = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
GPT2 = [f"transformer.h.{i}.{name}" for i in range(2)
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")] + ["lm_head"]  # fmt: skip


@pytest.mark.parametrize(
    ("targets", "layers", "leaves"),
    [
        (["all-linear"], LLAMA, {*ATTENTION, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}),
        (["attention"], LLAMA, ATTENTION),
        (["q_proj", "v_proj"], LLAMA, {"self_attn.q_proj", "self_attn.v_proj"}),
        (["attention"], GPT2, {"attn.c_attn", "attn.c_proj"}),
        (["all-linear"], GPT2, {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
    ],
)  # fmt: skip
def test_presets_resolve_per_architecture_and_never_take_the_head(
    targets: list[str], layers: list[str], leaves: set[str]
) -> None:
    chosen = resolve_targets(targets, layers)
    assert "lm_head" not in chosen
    assert {name.split(".", 3)[-1] for name in chosen} == leaves
    assert len(chosen) == 2 * len(leaves)  # both blocks


def test_names_that_select_nothing_are_reported_and_sets_round_trip() -> None:
    assert unknown_targets(["attention", "query", "v_proj"], LLAMA) == ["query"]
    assert split_targets(" q_proj , v_proj ") == ["q_proj", "v_proj"]
    assert split_targets(["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    assert split_targets(join_targets(["q_proj", "v_proj"])) == ["q_proj", "v_proj"]
