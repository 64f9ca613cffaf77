"""Slack endpoints: Events API (``/slack/events``) and slash commands (``/slack/commands``).

Every request is verified with the signing secret of the workspace it names (Slack's
``url_verification`` names none: any configured workspace's secret may sign it). Answers
are posted asynchronously, after the acknowledgement Slack needs within 3 seconds; Slack's
redeliveries (``X-Slack-Retry-Num``) and repeated event ids never produce a second answer,
and neither does a captured request replayed as is within the 5 minutes its signature is
accepted (events without an id, slash commands): each signature is answered once.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool

from api.chat.base import ChatQuestion, answer_in_chat
from api.chat.slack import PLATFORM, SlackPlatform, question_text, signature_valid, wants_answer
from api.deps import ServicesDep
from core.chat_integrations import ResolvedWorkspace, all_signing_secrets, resolve_workspace
from core.db import Database
from core.dedupe import SeenEvents
from core.errors import BadRequest, Unauthorized
from core.ratelimit import Limiter
from core.secrets import SecretBox
from core.settings import Settings

router = APIRouter(prefix="/slack", tags=["slack"])


def _state(request: Request) -> tuple[Settings, Database, SecretBox, SeenEvents]:
    state = request.app.state
    return state.settings, state.db, state.secret_box, state.seen_events


def _limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


@router.post("/events", summary="Slack Events API")
async def events(
    request: Request, background: BackgroundTasks, services: ServicesDep
) -> dict[str, Any]:
    settings, db, box, seen = _state(request)
    limiter = _limiter(request)
    body = await request.body()
    payload = _json(body)
    headers = {k.lower(): v for k, v in request.headers.items()}

    if payload.get("type") == "url_verification":
        secrets = await run_in_threadpool(_all_secrets, db, box)
        if not any(signature_valid(body, headers, secret) for secret in secrets):
            raise Unauthorized("invalid Slack signature", code="invalid_signature")
        return {"challenge": str(payload.get("challenge", ""))}

    team_id = str(payload.get("team_id", ""))
    workspace = await _verified_workspace(db, box, seen, body, headers, team_id)
    if workspace is None:
        return {"ok": True}  # this very request was answered already (a replay)
    if "x-slack-retry-num" in headers:
        return {"ok": True}  # a redelivery: the first delivery is being answered already
    event = payload.get("event") or {}
    event_id = str(payload.get("event_id") or event.get("client_msg_id") or "")
    if payload.get("type") == "event_callback" and wants_answer(event):
        key = f"slack:{workspace.external_id}:{event_id}"
        # A Redis round trip: off the event loop (a slow Redis must not stall other requests).
        if event_id and not await run_in_threadpool(seen.first_time, key):
            return {"ok": True}
        question = ChatQuestion(
            workspace=workspace,
            channel=str(event.get("channel", "")),
            text=question_text(str(event.get("text", ""))),
            user=event.get("user"),
            thread=str(event.get("thread_ts") or event.get("ts") or "") or None,
        )
        if question.text:
            background.add_task(
                answer_in_chat, services, limiter, SlackPlatform(settings), question
            )
    return {"ok": True}


@router.post("/commands", summary="Slack slash command /ask")
async def commands(
    request: Request, background: BackgroundTasks, services: ServicesDep
) -> dict[str, Any]:
    settings, db, box, seen = _state(request)
    limiter = _limiter(request)
    body = await request.body()
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    headers = {k.lower(): v for k, v in request.headers.items()}
    workspace = await _verified_workspace(db, box, seen, body, headers, form.get("team_id", ""))
    if workspace is None:  # a replay of a command already answered
        return {"response_type": "ephemeral", "text": "This request was answered already."}
    text = form.get("text", "").strip()
    if not text:
        return {"response_type": "ephemeral", "text": "Ask me something: `/ask <question>`"}
    question = ChatQuestion(
        workspace=workspace, channel=form.get("channel_id", ""), text=text, user=form.get("user_id")
    )
    background.add_task(answer_in_chat, services, limiter, SlackPlatform(settings), question)
    return {"response_type": "ephemeral", "text": f"Thinking about: {text}"}


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON", code="malformed_json") from exc
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object", code="malformed_json")
    return payload


def _all_secrets(db: Database, box: SecretBox) -> list[str]:
    with db.session() as session:
        return all_signing_secrets(session, box, PLATFORM)


async def _verified_workspace(
    db: Database,
    box: SecretBox,
    seen: SeenEvents,
    body: bytes,
    headers: dict[str, str],
    team_id: str,
) -> ResolvedWorkspace | None:
    """The workspace whose secret signed the request (401 otherwise), or None when this
    exact request (its signature) was handled before: a replay, answered at most once."""

    def lookup() -> ResolvedWorkspace | None:
        with db.session() as session:
            return resolve_workspace(session, box, PLATFORM, team_id)

    workspace = await run_in_threadpool(lookup) if team_id else None
    # Unknown workspace and bad signature look the same: nothing to learn from probing.
    if workspace is None or not signature_valid(body, headers, workspace.signing_secret):
        raise Unauthorized("invalid Slack signature", code="invalid_signature")
    # The signature covers the timestamp and the body: the same one again is a replay (a
    # redelivery by Slack is signed anew and is told apart by its retry header or event id).
    # Remembered longer than the 5 minutes a signature is accepted.
    key = f"slack-signature:{workspace.external_id}:{headers.get('x-slack-signature', '')}"
    if not await run_in_threadpool(seen.first_time, key):
        return None
    return workspace
