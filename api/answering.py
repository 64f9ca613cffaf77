"""Answering a question for a tenant, end to end: search its documents, answer from the
sources, log the query. One function for every non-streaming caller (the REST API, the
chat bots, the CLI); the streaming route shares its parts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from core.metrics import QUERY_STAGE_LATENCY, tenant_label
from core.models import new_id
from core.settings import Settings
from core.tenancy import TenantScope
from generation.answer import (
    AnswerResult,
    TokenEvent,
    answer_question,
    ms_since,
    stream_answer,
)
from generation.generator import Generator, get_generator
from generation.llm import GeneratorUnavailable
from generation.query_log import record_query
from generation.sources import Source, sources_from_hits
from retrieval.rerank import get_reranker
from retrieval.search import SearchRequest, search


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    top_k: int | None = None  # None: settings.answer_top_k
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    rerank: bool = True
    document_ids: list[str] | None = None
    tags: list[str] | None = None
    conversation_id: str | None = None


@dataclass
class Answered:
    query_id: str
    result: AnswerResult
    sources: list[Source]
    timings: dict[str, float]


@dataclass
class Retrieved:
    """A question whose sources are found: what every way of answering it (JSON, SSE, the
    CLI) goes on from, and what its log row and metrics are made of."""

    question: Question
    query_id: str
    started: float  # perf_counter at the start, for the end-to-end time
    sources: list[Source]
    timings: dict[str, float]
    calibrated: bool  # the sources' rerank scores are a cross-encoder's relevance
    generator: Generator

    def events(self, settings: Settings, *, stream: bool) -> Iterator[TokenEvent | AnswerResult]:
        """The answer's token events, then its result (``generation.answer.stream_answer``)."""
        return stream_answer(
            self.question.text,
            self.sources,
            self.generator,
            settings,
            stream=stream,
            rerank_calibrated=self.calibrated,
        )


def retrieve(
    settings: Settings, session: Session, scope: TenantScope, question: Question
) -> Retrieved:
    """Search the tenant's documents for the question's sources, and pick the generator."""
    started = time.perf_counter()
    found = search(
        settings,
        session,
        scope,
        SearchRequest(
            query=question.text,
            top_k=question.top_k or settings.answer_top_k,
            mode=question.mode,
            rerank=question.rerank,
            document_ids=question.document_ids,
            tags=question.tags,
        ),
    )
    sources = sources_from_hits(found.hits)
    timings = {k: float(v) for k, v in found.timings.items() if k in ("retrieve_ms", "rerank_ms")}
    return Retrieved(
        question=question,
        query_id=new_id(),
        started=started,
        sources=sources,
        timings=timings,
        calibrated=question.rerank and bool(sources) and get_reranker(settings).calibrated,
        generator=get_generator(settings),
    )


def answer(
    settings: Settings, session: Session, scope: TenantScope, question: Question
) -> Answered:
    """Answer and log one question. Raises ``AnswerUnavailable`` (503) after logging it."""
    retrieved = retrieve(settings, session, scope, question)
    try:
        result = answer_question(
            question.text,
            retrieved.sources,
            retrieved.generator,
            settings,
            rerank_calibrated=retrieved.calibrated,
        )
    except GeneratorUnavailable as exc:
        raise unavailable(settings, session, scope, retrieved, exc) from exc
    return finish(settings, session, scope, retrieved, result)


def finish(
    settings: Settings,
    session: Session,
    scope: TenantScope,
    retrieved: Retrieved,
    result: AnswerResult,
) -> Answered:
    """Time, observe and log an answered question."""
    timings = retrieved.timings
    timings["generate_ms"] = result.generate_ms
    timings["total_ms"] = ms_since(retrieved.started)
    observe_stages(settings, scope, timings)
    record_query(
        session,
        scope,
        query_id=retrieved.query_id,
        question=retrieved.question.text,
        sources=retrieved.sources,
        timings=timings,
        result=result,
        conversation_id=retrieved.question.conversation_id,
    )
    return Answered(retrieved.query_id, result, retrieved.sources, timings)


class AnswerUnavailable(GeneratorUnavailable):
    """The generator failed before answering. The question is logged; the error carries
    its id and the retrieved sources, which the 503 still returns."""

    def __init__(self, cause: GeneratorUnavailable, query_id: str, sources: list[Source]) -> None:
        super().__init__(cause.message, code=cause.code)
        self.query_id = query_id
        self.sources = sources


def unavailable(
    settings: Settings,
    session: Session,
    scope: TenantScope,
    retrieved: Retrieved,
    cause: GeneratorUnavailable,
) -> AnswerUnavailable:
    """Log a question the generator could not answer; the error to raise for it."""
    # Retrieval ran and its latency counts; the generate and end-to-end histograms are for
    # answers (a refused call's time says nothing about how fast answers are).
    observe_stages(settings, scope, retrieved.timings)
    log_unanswered(session, scope, retrieved, cause.message)
    return AnswerUnavailable(cause, retrieved.query_id, retrieved.sources)


def log_unanswered(
    session: Session,
    scope: TenantScope,
    retrieved: Retrieved,
    error: str,
    result: AnswerResult | None = None,
) -> None:
    """Log a question that got no complete answer: the generator was down, failed midway,
    or the client went away while it streamed."""
    retrieved.timings.setdefault("total_ms", ms_since(retrieved.started))
    record_query(
        session,
        scope,
        query_id=retrieved.query_id,
        question=retrieved.question.text,
        sources=retrieved.sources,
        timings=retrieved.timings,
        result=result,
        generator=retrieved.generator.name,
        conversation_id=retrieved.question.conversation_id,
        error=error,
    )


def observe_stages(settings: Settings, scope: TenantScope, timings: dict[str, float]) -> None:
    tenant = tenant_label(scope.slug, settings.metrics_tenant_label)
    for key, stage in (
        ("retrieve_ms", "retrieve"),
        ("rerank_ms", "rerank"),
        ("generate_ms", "generate"),
        ("total_ms", "end_to_end"),
    ):
        if key in timings:
            QUERY_STAGE_LATENCY.labels(stage, tenant).observe(timings[key] / 1000.0)
