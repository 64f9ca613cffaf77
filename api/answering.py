"""Answering a question for a tenant, end to end: search its documents, answer from the
sources, log the query. One function for every non-streaming caller (the REST API, the
chat bots, the CLI); the streaming route shares its parts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from core.metrics import QUERY_STAGE_LATENCY, tenant_label
from core.models import new_id
from core.settings import Settings
from core.tenancy import TenantScope
from generation.answer import AnswerResult, answer_question
from generation.generator import get_generator
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


def retrieve_sources(
    settings: Settings, session: Session, scope: TenantScope, question: Question
) -> tuple[list[Source], dict[str, float], bool]:
    """The question's sources, the search timings, and whether their rerank scores are a
    cross-encoder's calibrated relevance (a score fusion's are not)."""
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
    calibrated = question.rerank and bool(sources) and get_reranker(settings).calibrated
    return sources, timings, calibrated


def answer(
    settings: Settings, session: Session, scope: TenantScope, question: Question
) -> Answered:
    """Answer and log one question. Raises ``GeneratorUnavailable`` (503) after logging it."""
    started = time.perf_counter()
    query_id = new_id()
    sources, timings, calibrated = retrieve_sources(settings, session, scope, question)
    generator = get_generator(settings)
    try:
        result = answer_question(
            question.text, sources, generator, settings, rerank_calibrated=calibrated
        )
    except GeneratorUnavailable as exc:
        timings["total_ms"] = ms_since(started)
        raise unavailable(
            settings,
            session,
            scope,
            exc,
            query_id=query_id,
            question=question,
            sources=sources,
            timings=timings,
            generator=generator.name,
        ) from exc
    timings["generate_ms"] = result.generate_ms
    timings["total_ms"] = ms_since(started)
    observe_stages(settings, scope, timings)
    record_query(
        session,
        scope,
        query_id=query_id,
        question=question.text,
        sources=sources,
        timings=timings,
        result=result,
        conversation_id=question.conversation_id,
    )
    return Answered(query_id=query_id, result=result, sources=sources, timings=timings)


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
    cause: GeneratorUnavailable,
    *,
    query_id: str,
    question: Question,
    sources: list[Source],
    timings: dict[str, float],
    generator: str,
) -> AnswerUnavailable:
    """Log a question the generator could not answer; the error to raise for it."""
    # Retrieval ran and its latency counts; the generate and end-to-end histograms are for
    # answers (a refused call's time says nothing about how fast answers are).
    observe_stages(settings, scope, {k: v for k, v in timings.items() if k != "total_ms"})
    record_query(
        session,
        scope,
        query_id=query_id,
        question=question.text,
        sources=sources,
        timings=timings,
        generator=generator,
        conversation_id=question.conversation_id,
        error=cause.message,
    )
    return AnswerUnavailable(cause, query_id, sources)


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


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 1)
