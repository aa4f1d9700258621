"""``sweep serve`` against a bad or heavy client, through a real ``sweep serve`` subprocess on
loopback: a prompt past the context and a body past the size limit are refused before any
compute, a generation past the time limit ends with an error, a full queue answers 429 with
Retry-After, and SIGTERM mid-generation stops the whole process group.

The model is the tiny one with a 64k context and no way to stop by itself (its end-of-text rows
zeroed, so greedy decoding never picks them): a generation runs as long as it is allowed to.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sweeps.conftest import free_port, wait_until_up

LONG = 60_000  # max_tokens that a generation never finishes in the time it is given
NORMAL = {"model": "base", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def endless_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 64k-token context that never ends an answer by itself."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("endless")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.max_position_embeddings = 65_536
    with torch.no_grad():
        for token in {tokenizer.eos_token_id, tokenizer.pad_token_id}:
            model.get_output_embeddings().weight[token].zero_()  # logit 0: never the argmax
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def start_server(model: Path, tmp: Path, *flags: str) -> dict[str, Any]:
    port, log = free_port(), tmp / f"serve-{time.monotonic_ns()}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeps.cli.main", "serve", "base", "--base-model", str(model),
             "--port", str(port), "--engine", "transformers", "--state-dir", str(tmp / "sweeps"),
             "--mlflow-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--max-tokens", str(LONG), *flags],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    wait_until_up(f"http://127.0.0.1:{port}/health", proc=proc, log=log)
    return {"port": port, "proc": proc, "log": log}


@pytest.fixture(scope="module")
def server(
    endless_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """No request may wait behind the one being answered; 3 s per request; prompts of at most 200
    tokens; bodies of at most 4 MB (the default)."""
    started = start_server(endless_model, tmp_path_factory.mktemp("limits"), "--max-queue", "0",
                           "--request-timeout", "3",
                           "--max-prompt-tokens", "200")  # fmt: skip
    yield started
    started["proc"].terminate()
    started["proc"].wait(timeout=30)


def post(port: int, body: object = None, *, raw: bytes | None = None, chunked: bool = False,
         timeout: float = 60) -> tuple[int, dict[str, Any], dict[str, str]]:  # fmt: skip
    """POST /v1/chat/completions; (status, the JSON answer, the headers in lower case)."""
    data = raw if raw is not None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:  # no Content-Length: the body arrives in pieces
            pieces = (data[i : i + 65_536] for i in range(0, len(data), 65_536))
            connection.request("POST", "/v1/chat/completions", body=pieces, encode_chunked=True,
                               headers={"Content-Type": "application/json"})  # fmt: skip
        else:
            connection.request("POST", "/v1/chat/completions", body=data,
                               headers={"Content-Type": "application/json"})  # fmt: skip
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read()), {k.lower(): v for k, v in reply.getheaders()}
    finally:
        connection.close()


def health(port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/health")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def generating(port: int) -> None:
    """Wait until the server is generating an answer."""
    deadline = time.monotonic() + 30
    while not health(port)["generating"]:
        assert time.monotonic() < deadline, "the long request never started generating"
        time.sleep(0.05)


def long_request(
    port: int, results: list[tuple[int, dict[str, Any], dict[str, str]]]
) -> threading.Thread:
    body = {**NORMAL, "max_tokens": LONG}
    thread = threading.Thread(target=lambda: results.append(post(port, body)))
    thread.start()
    return thread


def test_a_prompt_past_the_context_is_refused_before_any_compute(server: dict[str, Any]) -> None:
    port = server["port"]
    huge = {**NORMAL, "messages": [{"role": "user", "content": " ".join(["word"] * 400_000)}]}
    status, answer, _ = post(port, huge)  # 2 MB of prompt, the issue's: refused unread
    assert status == 400 and answer["error"]["code"] == "context_length_exceeded"
    assert "at least" in answer["error"]["message"]  # sized from its bytes, never tokenized
    long_prompt = {**NORMAL, "messages": [{"role": "user", "content": "hello " * 300}]}
    status, answer, _ = post(port, long_prompt)
    assert status == 400 and answer["error"]["code"] == "context_length_exceeded"
    assert "at most 200 fit" in answer["error"]["message"]
    assert not health(port)["generating"]
    status, answer, _ = post(port, NORMAL)  # the next request is answered at once
    assert status == 200 and answer["usage"]["completion_tokens"] == 4


def test_a_body_past_the_size_limit_is_a_413_with_or_without_a_content_length(
    server: dict[str, Any],
) -> None:
    big = json.dumps({**NORMAL, "messages": [{"role": "user", "content": "x" * 5_000_000}]})
    for chunked in (False, True):
        status, answer, _ = post(server["port"], raw=big.encode(), chunked=chunked)
        assert status == 413, (chunked, answer)
        assert (
            answer["error"]["code"] == "request_too_large" and "4 MB" in answer["error"]["message"]
        )
    assert post(server["port"], NORMAL)[0] == 200


def test_a_generation_past_the_time_limit_ends_with_an_error_and_the_next_is_answered(
    server: dict[str, Any],
) -> None:
    status, answer, _ = post(server["port"], {**NORMAL, "max_tokens": LONG})
    assert status == 504 and answer["error"]["code"] == "request_timeout"
    assert "--request-timeout 3 s" in answer["error"]["message"]
    assert not health(server["port"])["generating"]
    assert post(server["port"], NORMAL)[0] == 200


def test_a_full_queue_answers_429_with_retry_after(server: dict[str, Any]) -> None:
    port, results = server["port"], []
    thread = long_request(port, results)
    generating(port)
    status, answer, headers = post(port, NORMAL)  # --max-queue 0: no room behind it
    assert status == 429 and answer["error"]["code"] == "queue_full"
    assert int(headers["retry-after"]) >= 1
    thread.join(timeout=30)
    assert results[0][0] == 504  # the long one ran to its time limit
    assert post(port, NORMAL)[0] == 200


def test_sigterm_mid_generation_stops_the_whole_process_group(
    endless_model: Path, tmp_path: Path
) -> None:
    started = start_server(endless_model, tmp_path, "--request-timeout", "600")
    proc, port, results = started["proc"], started["port"], []
    thread = long_request(port, results)
    generating(port)
    signalled = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)  # within 10 s, though the answer had 10 minutes left
    try:
        os.killpg(proc.pid, 0)
        pytest.fail("the server's process group outlived SIGTERM")
    except ProcessLookupError:
        pass
    thread.join(timeout=10)
    status, answer, _ = results[0]  # the request in flight got an error, not silence
    assert status == 503 and answer["error"]["code"] == "shutting_down"
    print(f"stopped {time.monotonic() - signalled:.2f} s after SIGTERM")
