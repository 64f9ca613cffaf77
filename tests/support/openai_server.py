"""A real OpenAI-compatible HTTP server for tests, speaking exactly what `vllm serve`
speaks: ``GET /v1/models``, ``POST /v1/chat/completions`` non-streamed and streamed as
server-sent events (a role chunk, content chunks, a finish chunk, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``).

Tests script its behaviour (reply text, 500s, delays, dropped connections) through
:class:`Behaviour` and read back every request body it received in ``requests``.
It runs under uvicorn in a background thread on a free localhost port.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.support.live_server import free_port

Mode = Literal["ok", "error500", "drop_before", "drop_mid", "slow"]
Reply = str | Callable[[dict[str, Any]], str]


@dataclass
class Behaviour:
    reply: Reply = "The sources say so [1]."
    mode: Mode = "ok"
    # The first `fail_first` chat requests answer 500, later ones follow `mode`.
    fail_first: int = 0
    # "slow": seconds before the response starts (headers included).
    delay_s: float = 0.0
    # Streamed content is cut into pieces of this many characters (0 = word by word),
    # so that [n] markers arrive split across chunks.
    chunk_chars: int = 0
    token_delay_s: float = 0.0


@dataclass
class OpenAITestServer:
    model: str = "test-model"
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "messages" in r]

    def prompt_text(self, index: int = -1) -> str:
        """All message contents of one recorded chat request, joined."""
        return "\n".join(m["content"] for m in self.chat_requests[index]["messages"])


def _pieces(text: str, chunk_chars: int) -> list[str]:
    if chunk_chars > 0:
        return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    return re.findall(r"\S+\s*|\s+", text)


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def build_app(server: OpenAITestServer) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        server.requests.append({"path": "/v1/models"})
        return {
            "object": "list",
            "data": [
                {
                    "id": server.model,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "vllm",
                    "root": server.model,
                    "parent": None,
                    "max_model_len": 4096,
                }
            ],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        body = await request.json()
        server.requests.append(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
        ):
            return JSONResponse(
                {
                    "object": "error",
                    "message": "messages: each message needs a string content",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
                status_code=400,
            )
        behaviour = server.behaviour
        if len(server.chat_requests) <= behaviour.fail_first or behaviour.mode == "error500":
            return JSONResponse(
                {
                    "object": "error",
                    "message": "scripted failure",
                    "type": "InternalServerError",
                    "param": None,
                    "code": 500,
                },
                status_code=500,
            )
        if behaviour.mode == "slow":
            await asyncio.sleep(behaviour.delay_s)
        reply = behaviour.reply(body) if callable(behaviour.reply) else behaviour.reply
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        usage = {
            "prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
            "total_tokens": 0,
            "completion_tokens": len(reply.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if behaviour.mode == "drop_before":
            return StreamingResponse(_broken_body(), media_type="application/json")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": server.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply, "tool_calls": []},
                            "logprobs": None,
                            "finish_reason": "stop",
                            "stop_reason": None,
                        }
                    ],
                    "usage": usage,
                    "prompt_logprobs": None,
                }
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": server.model,
                "choices": choices,
                **extra,
            }
            return f"data: {_dump(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            pieces = _pieces(reply, behaviour.chunk_chars)
            for i, piece in enumerate(pieces):
                if behaviour.mode == "drop_mid" and i == max(1, len(pieces) // 2):
                    raise ConnectionResetError("scripted drop in the middle of the stream")
                if behaviour.token_delay_s:
                    await asyncio.sleep(behaviour.token_delay_s)
                yield chunk(
                    [
                        {
                            "index": 0,
                            "delta": {"content": piece},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            yield chunk(
                [
                    {
                        "index": 0,
                        "delta": {"content": ""},
                        "logprobs": None,
                        "finish_reason": "stop",
                        "stop_reason": None,
                    }
                ]
            )
            if include_usage:
                yield chunk([], usage=usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def _broken_body() -> AsyncIterator[bytes]:
    raise ConnectionResetError("scripted drop before the body")
    yield b""  # pragma: no cover - makes this an async generator


@contextmanager
def running_server(model: str = "test-model") -> Iterator[OpenAITestServer]:
    """Start the server on a free localhost port; stop it on exit."""
    server = OpenAITestServer(model=model)
    port = free_port()
    config = uvicorn.Config(
        build_app(server), host="127.0.0.1", port=port, log_level="critical", lifespan="off"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test OpenAI server did not start")
        time.sleep(0.02)
    server.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        uv.should_exit = True
        thread.join(timeout=5)
