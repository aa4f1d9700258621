"""A base model with named adapters answering chat messages (what sweep serve serves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.chat import BASE_NAME, ChatError, ChatModel, Sampling


def random_adapter(base: Path, out: Path, *, seed: int) -> Path:
    """A LoRA adapter with random (not zero) B matrices: it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False))  # fmt: skip
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def chat(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ChatModel:
    tmp = tmp_path_factory.mktemp("chat")
    adapters = {"one": random_adapter(tiny_model, tmp / "one", seed=1),
                "two": random_adapter(tiny_model, tmp / "two", seed=2)}  # fmt: skip
    return ChatModel(tiny_model, adapters)


def test_each_name_answers_with_its_own_weights(chat: ChatModel) -> None:
    messages = [{"role": "user", "content": "Ann Lee, ann@example.org, 555-0100"}]
    greedy = Sampling(max_tokens=12)
    answers = {name: chat.complete(messages, model=name, sampling=greedy) for name in chat.names}
    assert chat.names == [BASE_NAME, "one", "two"]
    assert len({a.text for a in answers.values()}) == 3  # three different models
    again = chat.complete(messages, model="one", sampling=greedy)
    assert again.text == answers["one"].text  # greedy: the same answer, whatever ran between
    assert answers["base"] == chat.complete(messages, model="base", sampling=greedy)
    assert all(a.completion_tokens <= 12 and a.prompt_tokens > 5 for a in answers.values())


def test_prompts_use_the_chat_template_and_stop_strings_cut(chat: ChatModel) -> None:
    prompt = chat.render([{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hi"}])  # fmt: skip
    assert (
        prompt
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    full = chat.complete([{"role": "user", "content": "Hi"}], model="two",
                         sampling=Sampling(max_tokens=16))  # fmt: skip
    stop = full.text.strip()[-2:]  # the random adapter writes text: cut it at its last letters
    assert stop
    cut = chat.complete([{"role": "user", "content": "Hi"}], model="two",
                        sampling=Sampling(max_tokens=16, stop=(stop,)))  # fmt: skip
    assert cut.text == full.text[: full.text.index(stop)] and cut.finish_reason == "stop"


def test_without_a_chat_template_the_alpaca_layout_is_used(tiny_model_plain: Path) -> None:
    plain = ChatModel(tiny_model_plain, {})
    text = plain.render([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}])
    assert text == "S\n\n### Instruction:\nQ\n\n### Response:\n"


def test_unknown_models_and_malformed_messages_are_refused(chat: ChatModel) -> None:
    with pytest.raises(ChatError, match="no model 'three'"):
        chat.complete([{"role": "user", "content": "x"}], model="three")
    with pytest.raises(ChatError, match=r"messages\[0\]"):
        chat.complete([{"role": "robot", "content": "x"}], model="base")
    with pytest.raises(ChatError, match="empty"):
        chat.complete([], model="base")
    with pytest.raises(ChatError, match="names the base model"):
        ChatModel(Path("unused"), {"base": Path("unused")})
