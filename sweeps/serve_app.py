"""The FastAPI app of ``sweep serve``: OpenAI's chat-completions, models and a health check.

Imported only when serving (FastAPI resolves these annotations at run time, so this module does
not postpone them).
"""

import secrets
import time
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from trainers.chat import ChatModel


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


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


def build_app(chat: ChatModel, *, api_key: str | None, max_tokens: int) -> FastAPI:
    """The FastAPI app: chat completions, the model list and a health check."""
    app = FastAPI(title="sweep serve", docs_url=None, redoc_url=None, openapi_url=None)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer ...)")

    @app.exception_handler(HTTPException)
    async def openai_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code,
                                                                          "invalid_request_error")  # fmt: skip
        return JSONResponse({"error": {"message": exc.detail, "type": kind, "code": None}},
                            status_code=exc.status_code)  # fmt: skip

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": chat.names}

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "lora-sweep"}
            for name in chat.names
        ]}  # fmt: skip

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    def completions(body: ChatRequest) -> dict[str, Any]:
        return answer(chat, body, max_tokens=max_tokens)

    return app


def answer(chat: ChatModel, body: ChatRequest, *, max_tokens: int) -> dict[str, Any]:
    """One chat completion, in OpenAI's response shape."""
    from trainers.chat import ChatError, Sampling

    if body.stream:
        raise HTTPException(400, "stream: true is not supported by sweep serve; omit it")
    if body.model not in chat.names:
        raise HTTPException(404, f"no model {body.model!r}; served: {', '.join(chat.names)}")
    limit = min(body.max_completion_tokens or body.max_tokens or max_tokens, max_tokens)
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    sampling = Sampling(max_tokens=limit, temperature=body.temperature, top_p=body.top_p,
                        seed=body.seed, stop=stop)  # fmt: skip
    try:
        done = chat.complete([m.model_dump() for m in body.messages], model=body.model,
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
