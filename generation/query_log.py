"""The per-tenant query log: every asked question with its answer, citations, sources and
per-stage timings, and the feedback users give on it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.models import FeedbackRating, QueryLog, utcnow
from core.tenancy import TenantScope, get_owned
from generation.answer import AnswerResult
from generation.sources import Source


def numbered_sources(sources: list[Source], result: AnswerResult | None) -> list[dict[str, Any]]:
    """The retrieved sources as JSON, each with its [n] when it was in the prompt."""
    numbers = (
        {s.chunk_id: n for n, s in enumerate(result.sources_in_prompt, start=1)} if result else {}
    )
    return [s.summary(numbers.get(s.chunk_id)) for s in sources]


def record_query(
    session: Session,
    scope: TenantScope,
    *,
    query_id: str,
    question: str,
    sources: list[Source],
    timings: dict[str, float],
    result: AnswerResult | None = None,
    generator: str = "",
    conversation_id: str | None = None,
    error: str | None = None,
) -> QueryLog:
    """Store one query (also a failed one: ``result`` None and ``error`` set)."""
    row = QueryLog(
        id=query_id,
        tenant_id=scope.tenant_id,
        api_key_id=scope.api_key_id,
        conversation_id=conversation_id,
        question=question,
        answer=result.answer if result else "",
        citations=[c.to_dict() for c in result.citations] if result else [],
        sources=[
            {k: v for k, v in s.items() if k != "snippet"}
            for s in numbered_sources(sources, result)
        ],
        refused=result.refused if result else False,
        uncited=result.uncited if result else False,
        invalid_citations=result.invalid_citations if result else 0,
        generator=result.generator if result else generator,
        prompt_version=result.prompt_version if result else None,
        error=error,
        timings=timings,
    )
    session.add(row)
    session.flush()
    return row


def record_feedback(
    session: Session,
    scope: TenantScope,
    query_id: str,
    rating: FeedbackRating,
    comment: str | None = None,
) -> QueryLog:
    """Attach (or replace) the asking tenant's rating of one of its queries; another
    tenant's query id is a 404."""
    row: QueryLog = get_owned(session, QueryLog, query_id, scope)
    row.feedback = rating
    row.feedback_comment = comment
    row.feedback_at = utcnow()
    session.flush()
    return row
