"""The FastAPI app of ``sweep serve``: OpenAI's chat-completions, models and a health check.

Imported only when serving (FastAPI resolves these annotations at run time, so this module does
not postpone them).
"""

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from trainers.chat import ChatModel


class Message(BaseModel):
    """A chat message; content may be text, OpenAI's list of text parts, or null."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def as_turn(self) -> dict[str, str]:
        """role/content text: ``developer`` is the system turn, text parts are joined."""
        if isinstance(self.content, list):
            kinds = {str(part.get("type")) for part in self.content}
            if kinds - {"text"}:
                raise HTTPException(400, f"content parts of type {sorted(kinds - {'text'})} are "
                                         "not supported (text only)")  # fmt: skip
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
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None

    def unsupported(self) -> str | None:
        if self.tools:
            return "tools"
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            return "response_format"
        return "logprobs" if self.logprobs else None


def build_app(chat: ChatModel, *, api_key: str | None, max_tokens: int) -> FastAPI:
    """The FastAPI app: chat completions, the model list and a health check."""
    app = FastAPI(title="sweep serve", docs_url=None, redoc_url=None, openapi_url=None)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer ...)")

    @app.exception_handler(StarletteHTTPException)
    async def openai_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code,
                                                                          "invalid_request_error")  # fmt: skip
        return JSONResponse({"error": {"message": exc.detail, "type": kind, "code": None}},
                            status_code=exc.status_code)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse({"error": {"message": f"{where}: {first['msg']}", "code": None,
                                       "type": "invalid_request_error", "param": where}},
                            status_code=400)  # fmt: skip

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": {"message": f"{type(exc).__name__}: {exc}", "code": None,
                                       "type": "server_error"}}, status_code=500)  # fmt: skip

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": chat.names}

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "lora-sweep"}
            for name in chat.names
        ]}  # fmt: skip

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)], response_model=None)
    def completions(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        reply = answer(chat, body, max_tokens=max_tokens)
        if body.stream:  # the whole answer in one chunk: what streaming clients read
            return StreamingResponse(stream_chunks(reply), media_type="text/event-stream")
        return reply

    return app


def stream_chunks(reply: dict[str, Any]) -> Iterator[str]:
    """A finished completion as OpenAI's server-sent chunks: the answer, the finish, [DONE]."""
    head = {"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"],
            "model": reply["model"]}  # fmt: skip
    choice = reply["choices"][0]
    chunks = [
        {**head, "choices": [{"index": 0, "finish_reason": None, "delta": {
            "role": "assistant", "content": choice["message"]["content"]}}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
    ]  # fmt: skip
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def answer(chat: ChatModel, body: ChatRequest, *, max_tokens: int) -> dict[str, Any]:
    """One chat completion, in OpenAI's response shape."""
    from trainers.chat import ChatError, Sampling

    unsupported = body.unsupported()
    if unsupported:
        raise HTTPException(400, f"{unsupported} is not supported by sweep serve (vLLM's server "
                                 "has it: sweep serve --engine vllm on a GPU)")  # fmt: skip
    if body.model not in chat.names:
        raise HTTPException(404, f"no model {body.model!r}; served: {', '.join(chat.names)}")
    limit = min(body.max_completion_tokens or body.max_tokens or max_tokens, max_tokens)
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    sampling = Sampling(max_tokens=limit, temperature=body.temperature, top_p=body.top_p,
                        seed=body.seed, stop=stop)  # fmt: skip
    try:
        done = chat.complete([m.as_turn() for m in body.messages], model=body.model,
                             sampling=sampling)  # fmt: skip
    except ChatError as exc:
        raise HTTPException(400, str(exc)) from None
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion",
        "created": int(time.time()), "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                     "finish_reason": done.finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                  "total_tokens": done.prompt_tokens + done.completion_tokens},
    }  # fmt: skip
