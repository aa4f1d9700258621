"""`sweep serve` under load, and its memory under bad input, against plain transformers.

    python perf/bench_serve.py [--clients 4] [--seconds 60] [--out FILE]

1. **Load.** `sweep serve base` on the embedded SmolLM2-135M (a subprocess on 127.0.0.1), and
   ``--clients`` threads that each send one request after another for ``--seconds``: a mix of
   short prompts (one line) and long ones (about 400 tokens), 32 new tokens each, greedy.
   Requests/s, p50/p95 latency, and every answer that was not a 200 (by status).
2. **The baseline, in the same run:** the same model loaded in this process with
   ``trainers.models.load_causal_lm``, and the same prompts, chat template and ``generate``
   settings, one after another for ``--seconds``: requests/s of plain transformers.
3. **Memory.** The server's peak RSS (psutil, sampled every 50 ms): loaded and idle, answering a
   normal request, refusing a 2 MB prompt (400 context_length_exceeded) and a 5 MB body (413).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

MODEL = "smollm2-135m-instruct"
NEW_TOKENS = 32
SHORT = "Extract the contact from: Call Ana Ruiz at 555-0102 about the invoice."
LONG = " ".join(
    ["Meeting notes: the team reviewed the quarterly plan, the budget and hiring."] * 30
)


def prompts() -> list[str]:
    return [SHORT, LONG, SHORT, SHORT]  # three short for each long one


def request(port: int, prompt: str) -> tuple[int, float]:
    body = {"model": "base", "messages": [{"role": "user", "content": prompt}],
            "max_tokens": NEW_TOKENS}  # fmt: skip
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                           headers={"Content-Type": "application/json"})  # fmt: skip
        reply = connection.getresponse()
        reply.read()
        return reply.status, time.perf_counter() - started
    finally:
        connection.close()


def load(port: int, *, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads sending one request after another until ``seconds`` have passed."""
    results: list[tuple[int, float]] = []
    end = time.perf_counter() + seconds

    def client(offset: int) -> None:
        mix = prompts()
        i = offset
        while time.perf_counter() < end:
            results.append(request(port, mix[i % len(mix)]))
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ok = sorted(latency for status, latency in results if status == 200)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(results),
        "answered": len(ok), "requests_per_second": round(len(ok) / elapsed, 3),
        "p50_s": round(statistics.median(ok), 2) if ok else None,
        "p95_s": round(ok[int(0.95 * (len(ok) - 1))], 2) if ok else None,
        "errors": dict(Counter(str(status) for status, _ in results if status != 200)),
    }  # fmt: skip


def plain_generate(model_dir: Path, *, seconds: float) -> dict[str, Any]:
    """The baseline: the same prompts through model.generate, one after another."""
    import torch

    from trainers.chat import Sampling, generation_options
    from trainers.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, device="cpu").eval()
    options = generation_options(tokenizer, Sampling(max_tokens=NEW_TOKENS))
    mix, done, started = prompts(), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        text = tokenizer.apply_chat_template([{"role": "user", "content": mix[done % len(mix)]}],
                                             tokenize=False, add_generation_prompt=True)  # fmt: skip
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            model.generate(**encoded, **options)
        done += 1
    elapsed = time.perf_counter() - started
    return {"requests": done, "seconds": round(elapsed, 1),
            "requests_per_second": round(done / elapsed, 3)}  # fmt: skip


class PeakRss:
    """The peak resident memory of a process, sampled every 50 ms while in use."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


def bad_input(port: int, *, pid: int) -> dict[str, Any]:
    """Peak RSS for a normal request, a 2 MB prompt and a 5 MB body, and what each got."""
    out: dict[str, Any] = {}
    cases = {
        "normal": json.dumps({"model": "base", "max_tokens": NEW_TOKENS,
                              "messages": [{"role": "user", "content": SHORT}]}),
        "prompt_2mb": json.dumps({"model": "base", "messages": [
            {"role": "user", "content": " ".join(["word"] * 400_000)}]}),
        "body_5mb": json.dumps({"model": "base", "messages": [
            {"role": "user", "content": "x" * 5_000_000}]}),
    }  # fmt: skip
    for name, body in cases.items():
        with PeakRss(pid) as rss:
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            connection.request("POST", "/v1/chat/completions", body=body,
                               headers={"Content-Type": "application/json"})  # fmt: skip
            reply = connection.getresponse()
            answer = json.loads(reply.read())
            connection.close()
            took = time.perf_counter() - started
        code = answer.get("error", {}).get("code") if reply.status != 200 else None
        out[name] = {"status": reply.status, "code": code, "seconds": round(took, 3),
                     "peak_rss_mib": rss.mib}  # fmt: skip
    return out


def get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def start_server(model_dir: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeps.cli.main", "serve", "base", "--base-model", str(model_dir),
         "--port", str(port), "--engine", "transformers", "--state-dir", str(work / "sweeps"),
         "--mlflow-uri", f"sqlite:///{work / 'mlflow.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            get(port, "/health")
            return proc, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("sweep serve did not answer within 300 s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from trainers.models import resolve_base_model

    model_dir = resolve_base_model(MODEL).path
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(model_dir, Path(tmp))
        try:
            idle = PeakRss(proc.pid)
            idle.peak = idle.process.memory_info().rss
            memory = bad_input(port, pid=proc.pid)
            served = load(port, clients=args.clients, seconds=args.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    plain = plain_generate(model_dir, seconds=args.seconds)
    result = {
        "settings": {"model": MODEL, "new_tokens": NEW_TOKENS, "clients": args.clients,
                     "seconds": args.seconds, "mix": "3 short prompts (~20 tokens) : 1 long "
                     "(~400 tokens)"},
        "served": served, "plain_generate": plain,
        "ratio_vs_plain": round(served["requests_per_second"] / plain["requests_per_second"], 3),
        "memory": {"idle_rss_mib": idle.mib, **memory},
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    main()
