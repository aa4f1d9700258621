"""The FastAPI app of ``sweep serve``: OpenAI's chat-completions, models and a health check.

No request holds the endpoint hostage. A body past ``max_body_bytes`` is a 413, refused as its
bytes arrive; a prompt past the context is a 400 (``context_length_exceeded``) before any compute;
one answer is generated at a time and at most ``max_queue`` requests wait behind it (more get a
429 with Retry-After); a request past ``request_timeout`` (from its arrival) gets a 504; and when
the server stops, the answer being generated ends at its next token with a 503.

Imported only when serving (FastAPI resolves these annotations at run time, so this module does
not postpone them).
"""

import collections
import concurrent.futures
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypedDict, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from sweeps.serving.serve_limits import ServeLimits
from trainers.chat import ChatModel, Sampling, Stop

T = TypeVar("T")


class ServeError(Exception):
    """An error answered in OpenAI's shape, with its status, type, code and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "code": self.code,
                    "param": None,
                }
            },
            status_code=self.status,
            headers=self.headers,
        )


class Admission:
    """One generation at a time, always on the same thread, and a bounded queue behind it.

    One at a time: the active adapter is model state, and on a CPU one answer already keeps every
    core busy. The same thread: a CPU forward pass runs on the OpenMP thread team of the thread
    that calls it, and a team left idle keeps spinning for a while; answers on FastAPI's rotating
    worker threads would leave such teams competing for the cores. A request that finds
    ``max_queue`` waiting gets a 429 with Retry-After (the recent answers' mean time, times the
    queue); one still waiting at its deadline gets a 504."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._generator = concurrent.futures.ThreadPoolExecutor(1, "sweep-serve-generate")
        self._count = threading.Lock()
        self.pending = 0  # admitted and not answered: the one generating, and those waiting
        self.busy = False
        self._recent: collections.deque[float] = collections.deque([1.0], maxlen=8)

    @property
    def waiting(self) -> int:
        return max(0, self.pending - int(self.busy))

    def run(self, generate: Callable[[], T], *, deadline: float, timeout: float) -> T:
        """``generate()`` on the generation thread, once the answers before it are done."""
        with self._count:
            if self.pending > self.max_queue:
                wait = math.ceil(sum(self._recent) / len(self._recent) * self.pending)
                raise ServeError(
                    429,
                    f"the server is busy: {self.pending - 1} request(s) wait for "
                    f"the one being answered (--max-queue {self.max_queue}); retry "
                    f"in {wait} s",
                    kind="rate_limit_error",
                    code="queue_full",
                    headers={"Retry-After": str(max(1, wait))},
                )
            self.pending += 1
        try:
            return self._generator.submit(self._turn, generate, deadline, timeout).result()
        finally:
            with self._count:
                self.pending -= 1

    def _turn(self, generate: Callable[[], T], deadline: float, timeout: float) -> T:
        if time.monotonic() >= deadline:
            raise timed_out(timeout, queued=True)
        started = time.monotonic()
        self.busy = True
        try:
            return generate()
        finally:
            self.busy = False
            self._recent.append(time.monotonic() - started)


def timed_out(timeout: float, *, queued: bool = False) -> ServeError:
    if queued:
        what = "waited in the queue past --request-timeout {t:g} s: the server is busy; retry later"
    else:
        what = (
            "took longer than --request-timeout {t:g} s and was stopped: ask for fewer max_tokens"
        )
    return ServeError(
        504,
        f"the request {what.format(t=timeout)}, or start sweep serve with a "
        "longer --request-timeout",
        kind="timeout_error",
        code="request_timeout",
    )


class BodyLimit:
    """ASGI middleware: a request body past ``limit`` bytes is a 413, never read whole: its bytes
    are received and dropped (up to ``DRAIN_LIMIT``), so that a client that sends its whole body
    before reading the answer (Python's http.client, httpx) reads the 413 rather than a reset
    connection."""

    DRAIN_LIMIT = 256 * 1024 * 1024  # past this, the connection is closed with the 413 unread

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= self.DRAIN_LIMIT:
                await self.drain(receive, seen=0)
            await self.refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> ASGIMessage:  # a body sent in chunks, without a Content-Length
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # FastAPI passes an HTTPException on as it is
                if message.get("more_body"):
                    await self.drain(receive, seen=seen)
                raise HTTPException(413, self.message())
            return message

        await self.app(scope, counted, send)

    async def drain(self, receive: Receive, *, seen: int) -> None:
        """Receive the rest of the body and drop it, up to DRAIN_LIMIT bytes in all."""
        while seen <= self.DRAIN_LIMIT:
            message = await receive()
            seen += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ServeError(
            413, self.message(), kind="invalid_request_error", code="request_too_large"
        )
        await error.response()(scope, receive, send)

    def message(self) -> str:
        return f"the request body is over {self.limit / 2**20:g} MB (sweep serve --max-body-mb)"


class Message(BaseModel):
    """A chat message; content may be text, OpenAI's list of text parts, or null."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, object]] | None = None

    def as_turn(self) -> dict[str, str]:
        """role/content text: ``developer`` is the system turn, text parts are joined."""
        if isinstance(self.content, list):
            kinds = {str(part.get("type")) for part in self.content}
            if kinds - {"text"}:
                raise HTTPException(
                    400,
                    f"content parts of type {sorted(kinds - {'text'})} are "
                    "not supported (text only)",
                )
            text = "".join(str(part.get("text", "")) for part in self.content)
        else:
            text = self.content or ""
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat-completions request this server honours (others ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    # what this server does not do is refused, not silently ignored
    tools: list[object] | None = None
    response_format: dict[str, object] | None = None
    logprobs: bool | None = None

    def unsupported(self) -> str | None:
        if self.tools:
            return "tools"
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            return "response_format"
        return "logprobs" if self.logprobs else None


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Choice(TypedDict):
    index: int
    message: dict[str, str]  # role, content
    finish_reason: str  # stop | length
    logprobs: None


class ChatCompletion(TypedDict):
    """OpenAI's chat-completion response, as this server answers it."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


def build_app(
    chat: ChatModel,
    *,
    api_key: str | None,
    limits: ServeLimits,
    shutdown: threading.Event | None = None,
) -> FastAPI:
    """The FastAPI app: chat completions, the model list and a health check. ``shutdown``, once
    set, ends the answer being generated (the server is stopping)."""
    app = FastAPI(title="sweep serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    admission = Admission(limits.max_queue)
    stopping = shutdown or threading.Event()

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer ...)")

    add_error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, object]:
        return {
            "status": "ok",
            "models": chat.names,
            "generating": admission.busy,
            "waiting": admission.waiting,
        }

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def models() -> dict[str, object]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "lora-sweep"}
                for name in chat.names
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)], response_model=None)
    def completions(body: ChatRequest) -> ChatCompletion | StreamingResponse:
        arrived = time.monotonic()  # the body is read and parsed: the clock starts here
        reply = answer(
            chat,
            body,
            limits=limits,
            admission=admission,
            stop=Stop(arrived + limits.request_timeout, stopping),
        )
        if body.stream:  # the whole answer in one chunk: what streaming clients read
            return StreamingResponse(stream_chunks(reply), media_type="text/event-stream")
        return reply

    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error answered in OpenAI's shape, ``{"error": {"message", "type", "code"}}``: a
    refused request (401, 404, 413, ...), a body the schema refuses (400), a ServeError, and
    anything else (500)."""

    @app.exception_handler(StarletteHTTPException)
    async def openai_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(
            exc.status_code, "invalid_request_error"
        )
        code = "request_too_large" if exc.status_code == 413 else None
        return JSONResponse(
            {"error": {"message": exc.detail, "type": kind, "code": code}},
            status_code=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse(
            {
                "error": {
                    "message": f"{where}: {first['msg']}",
                    "code": None,
                    "type": "invalid_request_error",
                    "param": where,
                }
            },
            status_code=400,
        )

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "message": f"{type(exc).__name__}: {exc}",
                    "code": None,
                    "type": "server_error",
                }
            },
            status_code=500,
        )


def stream_chunks(reply: ChatCompletion) -> Iterator[str]:
    """A finished completion as OpenAI's server-sent chunks: the answer, the finish, [DONE]."""
    head = {
        "id": reply["id"],
        "object": "chat.completion.chunk",
        "created": reply["created"],
        "model": reply["model"],
    }
    choice = reply["choices"][0]
    chunks = [
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": None,
                    "delta": {"role": "assistant", "content": choice["message"]["content"]},
                }
            ],
        },
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
    ]
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def answer(
    chat: ChatModel, body: ChatRequest, *, limits: ServeLimits, admission: Admission, stop: Stop
) -> ChatCompletion:
    """One chat completion, in OpenAI's response shape: checked, admitted, generated."""
    from trainers.chat import ChatError, GenerationStopped

    prompt, sampling = checked_request(chat, body, limits=limits)
    assert stop.deadline is not None
    try:
        done = admission.run(
            lambda: chat.generate(prompt, model=body.model, sampling=sampling, stop=stop),
            deadline=stop.deadline,
            timeout=limits.request_timeout,
        )
    except ChatError as exc:
        raise HTTPException(400, str(exc)) from None
    except GenerationStopped as exc:
        if exc.reason == "deadline":
            raise timed_out(limits.request_timeout) from None
        raise ServeError(
            503, "the server is shutting down", kind="server_error", code="shutting_down"
        ) from None
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "finish_reason": done.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        },
    }


def checked_request(
    chat: ChatModel, body: ChatRequest, *, limits: ServeLimits
) -> tuple[str, Sampling]:
    """The rendered prompt and its sampling; what cannot run is refused
    here, before any compute: an unsupported field (400), an unknown model (404), a prompt or an
    answer asked for that does not fit the context (400, ``context_length_exceeded``)."""
    from trainers.chat import ChatError, ContextTooLong

    unsupported = body.unsupported()
    if unsupported:
        raise HTTPException(
            400,
            f"{unsupported} is not supported by sweep serve (vLLM's server "
            "has it: sweep serve --engine vllm on a GPU)",
        )
    if body.model not in chat.names:
        raise HTTPException(404, f"no model {body.model!r}; served: {', '.join(chat.names)}")
    try:
        prompt = chat.render([m.as_turn() for m in body.messages])
    except ChatError as exc:
        raise HTTPException(400, str(exc)) from None
    asked = body.max_completion_tokens or body.max_tokens
    context = limits.context_tokens or chat.context_tokens
    room = [n for n in (limits.max_prompt_tokens, context) if n is not None]
    try:
        prompt_tokens = chat.prompt_tokens(prompt, limit=min(room) if room else 10**9)
    except ContextTooLong as exc:
        capped = (
            f", --max-prompt-tokens {limits.max_prompt_tokens}" if limits.max_prompt_tokens else ""
        )
        raise context_exceeded(
            f"{exc} (the context is {context} tokens{capped}); shorten the prompt"
        ) from None
    limit = min(asked or limits.max_tokens, limits.max_tokens)
    if context is not None and prompt_tokens + limit > context:
        if asked is not None or prompt_tokens >= context:
            raise context_exceeded(
                f"the prompt is {prompt_tokens} tokens and max_tokens "
                f"{limit}: together past the context of {context} "
                "tokens; shorten the prompt or ask for fewer max_tokens"
            )
        limit = context - prompt_tokens  # no max_tokens asked: as much as the context leaves
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    sampling = Sampling(
        max_tokens=limit, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=stop
    )
    return prompt, sampling


def context_exceeded(message: str) -> ServeError:
    return ServeError(400, message, kind="invalid_request_error", code="context_length_exceeded")
