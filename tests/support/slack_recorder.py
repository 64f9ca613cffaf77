"""A local stand-in for Slack's Web API: records every call the bot makes (method and
arguments) and answers like Slack does, so tests see exactly what would be posted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request

from tests.support.live_server import serve


@dataclass
class SlackRecorder:
    base_url: str = ""
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    posted: threading.Event = field(default_factory=threading.Event)

    def messages(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [args for name, args, _ in self.calls if name == method]


@contextmanager
def slack_recorder() -> Iterator[SlackRecorder]:
    recorder = SlackRecorder()
    app = FastAPI()

    @app.post("/api/{method}")
    async def api(method: str, request: Request) -> dict[str, Any]:
        raw = (await request.body()).decode()
        if request.headers.get("content-type", "").startswith("application/json"):
            args = json.loads(raw or "{}")
        else:
            args = {k: v[0] for k, v in parse_qs(raw).items()}
        recorder.calls.append((method, args, request.headers.get("authorization", "")))
        recorder.posted.set()
        return {"ok": True, "channel": args.get("channel"), "ts": "1700000000.000100"}

    with serve(app) as url:
        recorder.base_url = f"{url}/api/"
        yield recorder
