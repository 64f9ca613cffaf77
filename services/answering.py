"""The one answer path: search the tenant's documents, turn the hits into sources, answer
from them (prompt, generator, [n] markers, citations), then log the query and count its
stage latencies. The API (JSON and SSE), the chat bots, the CLI and eval all call it with
the process's :class:`~services.container.Services`.

- :func:`answer` does it all in one call (``POST /v1/query`` as JSON, the chat bots, eval);
- :func:`retrieve` stops once the sources are found, for callers that print the answer as it
  is generated (SSE, ``ragkb ask``): they read :meth:`Retrieved.events`, then call
  :func:`finish`, or :func:`unavailable` / :func:`log_unanswered` when no answer came.

Eval asks with ``record=False``: its questions are neither logged nor counted in the stage
metrics; the stage timings come back on :class:`Answered` either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from core.metrics import QUERY_STAGE_LATENCY, tenant_label
from core.models import new_id
from core.settings import Settings
from core.tenancy import TenantScope
from generation.answer import AnswerResult, TokenEvent, ms_since, stream_answer
from generation.generator import Generator
from generation.llm import GeneratorUnavailable
from generation.query_log import record_query
from generation.sources import Source
from retrieval.document_match import MetadataFilters
from retrieval.search import SearchHit, SearchRequest, SearchResponse, search
from services.container import Services


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    top_k: int | None = None  # None: settings.answer.top_k
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    rerank: bool = True
    document_ids: list[str] | None = None
    tags: list[str] | None = None
    # Only documents whose metadata matches (``retrieval.document_match``).
    filters: MetadataFilters | None = None
    conversation_id: str | None = None


@dataclass
class Answered:
    query_id: str
    result: AnswerResult
    sources: list[Source]
    # Milliseconds: retrieve_ms, rerank_ms, generate_ms, total_ms.
    timings: dict[str, float]


@dataclass
class Retrieved:
    """A question whose sources are found: what every way of answering it (JSON, SSE, the
    CLI) goes on from, and what its log row and metrics are made of."""

    question: Question
    query_id: str
    started: float  # perf_counter at the start of the search, for the end-to-end time
    sources: list[Source]
    timings: dict[str, float]
    calibrated: bool  # the sources' rerank scores are a cross-encoder's relevance
    generator: Generator
    settings: Settings

    def events(self, *, stream: bool) -> Iterator[TokenEvent | AnswerResult]:
        """The answer's token events, then its result (``generation.answer.stream_answer``).
        ``stream=False`` asks the generator for the whole answer in one call."""
        return stream_answer(
            self.question.text,
            self.sources,
            self.generator,
            self.settings,
            stream=stream,
            rerank_calibrated=self.calibrated,
        )

    def result(self, *, stream: bool) -> AnswerResult:
        """The answer, without its token events."""
        for event in self.events(stream=stream):
            if isinstance(event, AnswerResult):
                return event
        raise AssertionError("stream_answer ended without a result")


def retrieve(
    services: Services,
    session: Session,
    scope: TenantScope,
    question: Question,
    *,
    searched: SearchResponse | None = None,
) -> Retrieved:
    """Search the tenant's documents for the question's sources.

    ``searched``: a search already run for this question with at least its ``top_k`` (eval
    answers from the one its ``hybrid+rerank`` ranking ran); its first ``top_k`` hits are
    the sources and its time counts in the end-to-end time."""
    settings = services.settings
    top_k = question.top_k or settings.answer.top_k
    if searched is None:
        started = time.perf_counter()
        searched = search(
            settings,
            session,
            scope,
            SearchRequest(
                query=question.text,
                top_k=top_k,
                mode=question.mode,
                rerank=question.rerank,
                document_ids=question.document_ids,
                tags=question.tags,
                filters=question.filters,
            ),
            indexer=services.indexer,
            reranker=services.reranker,
        )
    else:
        started = time.perf_counter() - searched.timings["total_ms"] / 1000
    sources = sources_of(searched.hits[:top_k])
    timings = {
        k: float(v) for k, v in searched.timings.items() if k in ("retrieve_ms", "rerank_ms")
    }
    return Retrieved(
        question=question,
        query_id=new_id(),
        started=started,
        sources=sources,
        timings=timings,
        calibrated=question.rerank and bool(sources) and services.reranker.calibrated,
        generator=services.generator,
        settings=settings,
    )


def sources_of(hits: Sequence[SearchHit]) -> list[Source]:
    """The sources generation answers from, in the hits' rank order."""
    return [Source.of(hit, score=hit.score, scores=hit.scores) for hit in hits]


def answer(
    services: Services,
    session: Session,
    scope: TenantScope,
    question: Question,
    *,
    stream: bool = False,
    record: bool = True,
    searched: SearchResponse | None = None,
) -> Answered:
    """Answer one question, log it and count its stage latencies.

    ``stream``: call the generator streaming and collect its tokens, as ``ragkb ask`` does
    (else one non-streamed call). ``record=False`` (eval): neither log the question nor
    count it in the metrics, and let ``GeneratorUnavailable`` through as it is; else a
    generator that cannot answer raises ``AnswerUnavailable`` (503) after the question is
    logged. ``searched``: see :func:`retrieve`."""
    retrieved = retrieve(services, session, scope, question, searched=searched)
    try:
        result = retrieved.result(stream=stream)
    except GeneratorUnavailable as exc:
        if not record:
            raise
        raise unavailable(services, session, scope, retrieved, exc) from exc
    return finish(services, session, scope, retrieved, result, record=record)


def finish(
    services: Services,
    session: Session,
    scope: TenantScope,
    retrieved: Retrieved,
    result: AnswerResult,
    *,
    record: bool = True,
) -> Answered:
    """Time an answered question; with ``record``, observe its stages and log it."""
    timings = retrieved.timings
    timings["generate_ms"] = result.generate_ms
    timings["total_ms"] = ms_since(retrieved.started)
    if record:
        observe_stages(services.settings, scope, timings)
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
    services: Services,
    session: Session,
    scope: TenantScope,
    retrieved: Retrieved,
    cause: GeneratorUnavailable,
) -> AnswerUnavailable:
    """Log a question the generator could not answer; the error to raise for it."""
    # Retrieval ran and its latency counts; the generate and end-to-end histograms are for
    # answers (a refused call's time says nothing about how fast answers are).
    observe_stages(services.settings, scope, retrieved.timings)
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
    """Count one question's stage latencies in ``ragkb_query_stage_duration_seconds``."""
    tenant = tenant_label(scope.slug, settings.observability.metrics_tenant_label)
    for key, stage in (
        ("retrieve_ms", "retrieve"),
        ("rerank_ms", "rerank"),
        ("generate_ms", "generate"),
        ("total_ms", "end_to_end"),
    ):
        if key in timings:
            QUERY_STAGE_LATENCY.labels(stage, tenant).observe(timings[key] / 1000.0)
