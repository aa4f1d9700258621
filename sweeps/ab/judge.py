"""The LLM judge of ``sweep judge``, ``sweep compare --judge`` and promote's gate: its settings (a
sweep YAML's ``judge:`` section with the --judge-* flags on top) and how one question is put to
it. The judge is any OpenAI-compatible endpoint (``judge.base_url``, ``judge.model``; the key
from the environment variable ``judge.api_key_env``, never logged), ``sweep serve`` included,
through the ``openai`` client (imported here alone), or a model in-process (no ``base_url``).
Judging rows is ``sweeps/ab/judge_verdicts.py``; judging pairs of sides, logged and stored as
evidence, ``sweeps/ab/judge_pairs.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evals.judge import Rubric, RubricError, load_rubric
from sweeps.config import ConfigError, JudgeConfig
from sweeps.serving.sides import home_config

if TYPE_CHECKING:
    import openai

    from trainers.chat import ChatModel


@dataclass(frozen=True)
class Answer:
    """What the judge said, and how it ended: stop, length (cut at judge.max_tokens), or error
    (the endpoint refused this one question; the text says why). Errors are not cached."""

    text: str
    finish: str = "stop"


class Asker(Protocol):
    """Puts one question to the judge and returns its answer."""

    identity: str

    def ask(self, messages: list[dict[str, str]]) -> Answer: ...


# --------------------------------------------------------------------------- the judge
@dataclass(frozen=True)
class JudgeSettings:
    """A resolved judge: the config's fields with the rubric read."""

    config: JudgeConfig
    rubric: Rubric

    @property
    def identity(self) -> str:
        c = self.config
        return json.dumps(
            [c.base_url or "in-process", c.model, self.rubric.digest(), c.temperature, c.max_tokens]
        )

    def describe(self) -> str:
        where = self.config.base_url or "in-process"
        return f"{self.config.model} at {where}, rubric {', '.join(self.rubric.criteria)}"


def judge_settings(
    config: JudgeConfig | None, overrides: Mapping[str, object] | None = None
) -> JudgeSettings:
    """The sweep YAML's ``judge:`` with the command line's overrides on top (``judge:`` fields;
    None: that flag was not given)."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if config is None and "model" not in given:
        raise ConfigError(
            "no judge: add a judge: section to the sweep YAML ({base_url, model}) or pass "
            "--judge-model (and --judge-url for an endpoint, e.g. one sweep serve started)"
        )
    fields = config.model_dump() if config is not None else {}
    fields.update(given)
    resolved = JudgeConfig(**fields)
    try:
        loaded = load_rubric(Path(resolved.rubric) if resolved.rubric else None)
    except RubricError as exc:
        raise ConfigError(str(exc)) from None
    return JudgeSettings(resolved, loaded)


def sweep_judge_config(
    refs: Sequence[str], *, state_dir: Path, mlflow_uri: str
) -> JudgeConfig | None:
    """The ``judge:`` section of the sweep the first side from a sweep comes from (None if none)."""
    from sweeps.serving.sides import resolve_side

    for ref in refs:
        side = resolve_side(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
        if side.state is not None:
            section = home_config(side.state).get("judge")
            return JudgeConfig.model_validate(section) if section else None
    return None


class EndpointAsker:
    """An OpenAI-compatible chat-completions endpoint, through the ``openai`` client."""

    def __init__(self, settings: JudgeSettings) -> None:
        import os

        from openai import OpenAI

        c = settings.config
        assert c.base_url is not None
        key = os.environ.get(c.api_key_env, "")
        if not key and not _loopback(c.base_url):  # sweep serve without --api-key-env
            raise ConfigError(
                f"judge at {c.base_url}: the key variable {c.api_key_env} is not "
                f"set (export {c.api_key_env}=..., or judge.api_key_env)"
            )
        self.client = OpenAI(
            base_url=c.base_url, api_key=key or "unused", timeout=c.timeout_s, max_retries=2
        )
        self.config = c
        self.identity = settings.identity

    def check(self) -> None:
        """Before anything is scored: the endpoint answers, takes the key and serves the model
        (an endpoint without a model list is taken at its word)."""
        import openai

        where = f"judge endpoint {self.config.base_url}"
        try:
            served = [
                m.id for m in self.client.with_options(timeout=30, max_retries=0).models.list()
            ]
        except openai.APIConnectionError:
            raise ConfigError(
                f"{where} does not answer (is it running? sweep serve REF starts one)"
            ) from None
        except openai.AuthenticationError:
            raise ConfigError(f"{where} refused the key in {self.config.api_key_env}") from None
        except openai.APIStatusError:
            return
        if served and self.config.model not in served:
            raise ConfigError(
                f"{where} does not serve {self.config.model!r} "
                f"(it serves: {', '.join(served)}); set judge.model"
            )

    def ask(self, messages: list[dict[str, str]]) -> Answer:
        """One answer. A question the endpoint refuses (400: too long, say) is an error answer,
        counted as unreadable; an endpoint that fails (down, timing out, 429 or 5xx after the
        client's retries, a wrong key) stops the run in one line."""
        import openai

        try:
            reply = self.client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
            )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            return Answer(f"error: {exc.message}", finish="error")
        except openai.APIError as exc:
            raise self._stopped(exc) from None
        if not reply.choices:
            return Answer("error: the endpoint returned no choice", finish="error")
        choice = reply.choices[0]
        return Answer(choice.message.content or "", finish=str(choice.finish_reason or "stop"))

    def _stopped(self, exc: openai.APIError) -> ConfigError:
        """The one line an endpoint failing mid-run stops it with."""
        import openai

        where = f"judge endpoint {self.config.base_url}"
        if isinstance(exc, openai.APITimeoutError):
            return ConfigError(
                f"{where}: no answer in {self.config.timeout_s:g} s (judge.timeout_s)"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ConfigError(f"{where} stopped answering (is it running?)")
        if isinstance(exc, openai.APIStatusError):
            return ConfigError(f"{where}: HTTP {exc.status_code}: {exc.message}")
        return ConfigError(f"{where}: {exc.message}")


class LocalAsker:
    """A model in this process: a base model (name or directory) or an adapter reference."""

    def __init__(self, settings: JudgeSettings, *, state_dir: Path, mlflow_uri: str) -> None:
        from trainers.chat import Sampling

        self.chat: ChatModel = local_judge_model(
            settings.config.model, state_dir=state_dir, mlflow_uri=mlflow_uri
        )
        self.name = self.chat.names[-1]  # the adapter when there is one, else the base
        c = settings.config
        self.sampling = Sampling(max_tokens=c.max_tokens, temperature=c.temperature)
        self.identity = json.dumps([settings.identity, self.chat.weights_identity()])

    def ask(self, messages: list[dict[str, str]]) -> Answer:
        done = self.chat.complete(messages, model=self.name, sampling=self.sampling)
        return Answer(done.text, finish=done.finish_reason)


def local_judge_model(model: str, *, state_dir: Path, mlflow_uri: str) -> ChatModel:
    from sweeps.serving.serve import Served, base_directory, resolve_served
    from trainers.chat import ChatModel

    try:
        served = resolve_served([f"judge={model}"], state_dir=state_dir, mlflow_uri=mlflow_uri)
    except ConfigError as not_adapter:  # a base model's name or directory, else the first error
        try:
            served = Served(base=base_directory(model), adapters={})
        except ConfigError:
            raise not_adapter from None
    return ChatModel(served.base, served.adapters, trust_remote_code=served.trust_remote_code)


def make_asker(settings: JudgeSettings, *, state_dir: Path, mlflow_uri: str) -> Asker:
    """The judge, checked: an endpoint must answer and serve the model; a local one is loaded."""
    if settings.config.base_url:
        asker = EndpointAsker(settings)
        asker.check()
        return asker
    return LocalAsker(settings, state_dir=state_dir, mlflow_uri=mlflow_uri)


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    from sweeps.serving.serve import LOOPBACK_HOSTS

    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS
