"""What one request may ask of ``sweep serve``: shared by the command (its flags) and the app
(``sweeps/serving/serve_app.py``), which imports fastapi; this module imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of ``sweep serve`` (``sweep serve --help`` shows these defaults).
    One answer is generated at a time, on a CPU and on a GPU alike: the active adapter is model
    state, and on a CPU one answer already uses every core (vLLM batches on a GPU)."""

    max_tokens: int = 512  # the most tokens one answer may have
    context_tokens: int | None = None  # prompt and answer together; None: the model's config
    max_prompt_tokens: int | None = None  # None: the context
    request_timeout: float = 120.0  # seconds from a request's arrival to its answer, queue included
    max_queue: int = 16  # requests that may wait behind the one being generated
    max_body_mb: float = 4.0  # a request body past this is refused (413), unread

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
