"""The query log and feedback on both databases (JSON columns, enum, tenant scoping)."""

from __future__ import annotations

import pytest

from core import db as database
from core import tenants
from core.errors import NotFound
from core.models import FeedbackRating, QueryLog, new_id
from core.settings import Settings
from core.tenancy import TenantScope
from generation.answer import answer_question
from generation.extractive import ExtractiveGenerator
from generation.prompts import PROMPT_VERSION
from generation.query_log import record_feedback, record_query
from generation.sources import Source


def test_query_log_and_feedback_round_trip(any_db_settings: Settings) -> None:
    db = database.Database.from_settings(any_db_settings)
    try:
        with db.session() as session:
            a, b = (tenants.create_tenant(session, f"log-{new_id()[:8]}") for _ in range(2))
            scope_a = TenantScope(tenant_id=a.id, slug=a.slug)
            scope_b = TenantScope(tenant_id=b.id, slug=b.slug)
        source = Source(
            chunk_id="c1",
            document_id="d1",
            filename="q3.pdf",
            text="Revenue was $5 million.",
            page_start=2,
            page_end=2,
            scores={"dense": 0.7},
            score=0.7,
        )
        result = answer_question("revenue?", [source], ExtractiveGenerator(), any_db_settings)
        query_id = new_id()
        with db.session() as session:
            record_query(
                session,
                scope_a,
                query_id=query_id,
                question="revenue?",
                sources=[source],
                timings={"retrieve_ms": 1.5, "generate_ms": 2.0, "total_ms": 4.0},
                result=result,
            )
        with db.session() as session:
            with pytest.raises(NotFound):
                record_feedback(session, scope_b, query_id, FeedbackRating.UP)
            record_feedback(session, scope_a, query_id, FeedbackRating.UP, "spot on")
        with db.session() as session:
            row = session.get(QueryLog, query_id)
            assert row is not None
            assert row.answer == "Revenue was $5 million. [1]"
            assert row.citations[0]["chunk_id"] == "c1" and row.citations[0]["n"] == 1
            assert row.sources[0]["n"] == 1 and row.sources[0]["scores"] == {"dense": 0.7}
            assert row.timings == {"retrieve_ms": 1.5, "generate_ms": 2.0, "total_ms": 4.0}
            assert row.feedback is FeedbackRating.UP and row.feedback_comment == "spot on"
            assert row.generator == "extractive" and row.prompt_version == PROMPT_VERSION
            assert not row.refused and not row.uncited and row.created_at.tzinfo is not None
    finally:
        db.dispose()
