"""Questions and answers: ``POST /v1/query`` (JSON or Server-Sent Events) and
``POST /v1/feedback``.

A query searches the tenant's documents, answers from the retrieved sources with the
configured generator, and is logged per tenant with its timings. With ``stream: true``
the answer arrives as SSE: ``token`` events (``{"text"}``), then one ``citations`` event
(``{"citations", "invalid_citations", "uncited"}``), then ``done`` (the JSON answer without
its citations); or, when the generator fails mid-answer, an ``error`` event in the error
shape. When the generator is down the answer
is a 503 in the error shape that still carries the retrieved sources. The work is
``services.answering``'s; this module wires HTTP to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import QuerySlotDep, ServicesDep, SessionDep, TenantDep
from api.errors import error_body
from api.schemas import FeedbackIn, FeedbackOut, QueryIn, QueryOut, query_out
from core.tenancy import TenantScope
from generation.answer import AnswerResult, TokenEvent
from generation.llm import GeneratorUnavailable
from generation.query_log import numbered_sources, record_feedback
from services.answering import (
    Answered,
    AnswerUnavailable,
    Question,
    Retrieved,
    answer,
    finish,
    log_unanswered,
    retrieve,
    unavailable,
)
from services.container import Services

router = APIRouter(prefix="/v1", tags=["query"])


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The generator is down; the body carries the retrieved sources."}
}


@router.post(
    "/query",
    response_model=QueryOut,
    responses={200: {"content": {"text/event-stream": {}}}, **_UNAVAILABLE},
    summary="Answer a question with citations",
)
def query(
    body: QueryIn,
    request: Request,
    scope: TenantDep,
    session: SessionDep,
    services: ServicesDep,
    _slot: QuerySlotDep,
) -> Any:
    question = Question(
        text=body.question,
        top_k=body.top_k,
        mode=body.mode,
        rerank=body.rerank,
        document_ids=body.document_ids,
        tags=body.tags,
        filters=body.filters,
        conversation_id=body.conversation_id,
    )
    if not body.stream:
        try:
            answered = answer(services, session, scope, question)
        except AnswerUnavailable as exc:
            return _unavailable_response(exc)
        return query_out(answered.query_id, answered.result, answered.sources, answered.timings)

    retrieved = retrieve(services, session, scope, question)
    events = retrieved.events(stream=True)
    try:
        first = next(events)  # a generator that cannot answer fails here, before any output
    except GeneratorUnavailable as exc:
        return _unavailable_response(unavailable(services, session, scope, retrieved, exc))
    context = _StreamContext(
        services=services,
        scope=scope,
        retrieved=retrieved,
        request_id=getattr(request.state, "request_id", None),
    )
    return StreamingResponse(
        _sse(context, first, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _unavailable_response(exc: AnswerUnavailable) -> JSONResponse:
    """503 in the error shape, still carrying the query id and the retrieved sources."""
    content = error_body(
        503,
        exc.message,
        exc.code,
        query_id=exc.query_id,
        sources=numbered_sources(exc.sources, None),
    )
    return JSONResponse(content, status_code=503)


@router.post("/feedback", response_model=FeedbackOut, summary="Rate an answer")
def feedback(body: FeedbackIn, scope: TenantDep, session: SessionDep) -> FeedbackOut:
    row = record_feedback(session, scope, body.query_id, body.rating, body.comment)
    assert row.feedback is not None
    return FeedbackOut(query_id=row.id, rating=row.feedback, comment=row.feedback_comment)


# --- helpers ------------------------------------------------------------------------------


@dataclass
class _StreamContext:
    services: Services
    scope: TenantScope
    retrieved: Retrieved
    request_id: str | None


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse(
    ctx: _StreamContext,
    first: TokenEvent | AnswerResult,
    events: Iterator[TokenEvent | AnswerResult],
) -> Iterator[str]:
    """token* -> citations -> done; or token* -> error when the generator fails midway.

    Runs after the request's own session has closed, so the log uses a session of its own;
    a client that goes away mid-answer still gets its query logged (as interrupted).
    """
    result: AnswerResult | None = None
    answered: Answered | None = None
    error: str | None = "the client disconnected before the answer was complete"
    code = "generator_unavailable"
    pending: TokenEvent | AnswerResult | None = first
    try:
        try:
            while pending is not None:
                if isinstance(pending, TokenEvent):
                    yield _event("token", {"text": pending.text})
                else:
                    result = pending
                pending = next(events, None)
            error = None if result is not None else "the generator ended without an answer"
        except GeneratorUnavailable as exc:
            error, code = exc.message, exc.code
        if error is not None:
            body = {"code": code, "message": error, "request_id": ctx.request_id}
            yield _event("error", {"error": body})
            return
        assert result is not None
        with ctx.services.db.session() as session:
            answered = finish(ctx.services, session, ctx.scope, ctx.retrieved, result)
        out = query_out(answered.query_id, result, answered.sources, answered.timings)
        yield _event(
            "citations",
            {
                "citations": [c.model_dump() for c in out.citations],
                "invalid_citations": out.invalid_citations,
                "uncited": out.uncited,
            },
        )
        yield _event("done", out.model_dump(exclude={"citations"}))
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # stop reading from the LLM if the client went away
            close()
        if answered is None:
            with ctx.services.db.session() as session:
                message = error or "the answer could not be completed"
                log_unanswered(session, ctx.scope, ctx.retrieved, message, result)
