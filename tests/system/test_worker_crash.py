"""A Celery worker killed with SIGKILL in the middle of a large PDF (real worker process,
real Redis broker on a queue of this test's own, PostgreSQL): while it works nothing of the
document is searchable; after a new worker starts, the reaper queues it again and it ends
``ready``, with no duplicate chunk rows or index points, and the tenant's BM25 statistics
match exactly what the index holds.
"""

from __future__ import annotations

import io
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from core import tenants
from core.db import Database
from core.models import Bm25CorpusStat, Chunk, Document, DocumentStatus, Tenant
from core.settings import Settings
from core.tenancy import TenantScope
from ingest.documents import IN_FLIGHT, add_document
from tasks.names import TaskName
from tasks.queue import CeleryQueue
from tests.support.celery_workers import (
    Workers,
    celery_test_settings,
    load_document,
    redis_available,
    running_workers,
    wait_for_document,
    worker_env,
)
from tests.support.helpers import SHARED_DATA, make_services

REDIS_URL = "redis://127.0.0.1:6379/13"
BIG_PDF = SHARED_DATA / "sec-10-q" / "docs" / "2023 Q1 AMZN.pdf"
SMALL = b"# Parking\n\nVisitors park on level two of the west garage; the gate code is 4417.\n"


pytestmark = [
    pytest.mark.skipif(not redis_available(REDIS_URL), reason="Redis at 127.0.0.1:6379 is down"),
    pytest.mark.skipif(not BIG_PDF.exists(), reason=f"{BIG_PDF} not found"),
]


@pytest.fixture
def crash_settings(tmp_path: Path, pg_url: str) -> Iterator[Settings]:
    data_dir = tmp_path / "crash-data"
    data_dir.mkdir()
    settings = celery_test_settings(
        data_dir,
        REDIS_URL,
        storage={"database_url": pg_url},
        ingest={"heartbeat_s": 0.5, "stale_after_s": 3.0},
    )
    yield settings
    redis.Redis.from_url(REDIS_URL).delete(
        settings.tasks.celery_queue, settings.tasks.celery_light_queue
    )


@pytest.fixture
def workers(crash_settings: Settings) -> Iterator[Workers]:
    with running_workers(
        worker_env(crash_settings, REDIS_URL), crash_settings.storage.data_dir
    ) as started:
        yield started


def test_worker_killed_mid_pdf_leaves_no_duplicates_and_nothing_half_searchable(
    crash_settings: Settings, workers: Workers
) -> None:
    settings = crash_settings
    db = Database.from_settings(settings)
    slug = f"crash-{uuid.uuid4().hex[:8]}"
    with db.session() as session:
        tenant = tenants.create_tenant(session, slug)
        scope = TenantScope(tenant_id=tenant.id, slug=tenant.slug)
    queue = CeleryQueue(settings)
    try:
        worker = workers.start("--pool", "threads")
        with db.session() as session:
            small = add_document(session, settings, scope, "parking.md", io.BytesIO(SMALL))
        queue.submit(TaskName.INGEST_DOCUMENT, scope.tenant_id, small.document.id)
        small_doc = wait_for_document(
            db, small.document.id, lambda d: d.status == DocumentStatus.READY, 180
        )

        with db.session() as session:
            big_id = add_document(
                session, settings, scope, BIG_PDF.name, io.BytesIO(BIG_PDF.read_bytes())
            ).document.id
        queue.submit(TaskName.INGEST_DOCUMENT, scope.tenant_id, big_id)
        # Killed once its chunk rows exist and embedding is under way: the worst moment.
        wait_for_document(db, big_id, lambda d: d.status in (DocumentStatus.EMBEDDING,
                                                 DocumentStatus.INDEXING), 120)  # fmt: skip
        time.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert load_document(db, big_id).status in IN_FLIGHT

        # Nothing of the unfinished document is searchable (the index is free now).
        _assert_searchable(settings, db, scope, "Amazon net sales AWS segment", small_doc, big_id)

        workers.start("--pool", "threads")
        # The reaper queues it again (its first attempt was interrupted): it gets done.
        statuses = (DocumentStatus.QUEUED, *IN_FLIGHT)
        done = wait_for_document(db, big_id, lambda d: d.status not in statuses, 240)
        assert done.status == DocumentStatus.READY, done.error
        assert done.attempts == 2 and done.error is None
        workers.stop()
        _assert_consistent(settings, db, scope, {small_doc.id: small_doc.chunk_count,
                                                 big_id: done.chunk_count})  # fmt: skip
    finally:
        queue.close()
        with db.session() as session:
            row = session.get(Tenant, scope.tenant_id)
            if row is not None:
                session.delete(row)
        db.dispose()


def _assert_searchable(
    settings: Settings, db: Database, scope: TenantScope, query: str, small: Document, big_id: str
) -> None:
    from retrieval.search import SearchRequest, search

    services = make_services(settings, db)
    try:
        with db.session() as session:
            request = SearchRequest(query=query, top_k=50)
            hits = search(
                settings,
                session,
                scope,
                request,
                indexer=services.indexer,
                reranker=services.reranker,
            ).hits
        assert big_id not in {h.document_id for h in hits}
    finally:
        services.close()


def _assert_consistent(
    settings: Settings, db: Database, scope: TenantScope, expected: dict[str, int]
) -> None:
    services = make_services(settings, db)
    try:
        indexer = services.indexer
        with db.session() as session:
            for document_id, chunk_count in expected.items():
                rows, ordinals = session.execute(
                    select(func.count(Chunk.id), func.count(func.distinct(Chunk.ordinal))).where(
                        Chunk.document_id == document_id
                    )
                ).one()
                assert rows == ordinals == chunk_count, (document_id, rows, ordinals)
                points = indexer.vector_index.points(scope, document_id=document_id)
                assert len(points) == len({p.id for p in points}) == chunk_count, document_id
            stats = session.get(Bm25CorpusStat, scope.tenant_id)
            indexed = indexer.count(scope)
            assert indexed == sum(expected.values())
            assert stats is not None
            assert stats.doc_count == indexed, (stats.doc_count, indexed)
    finally:
        services.close()


def test_points_written_without_their_statistics_are_discarded_without_drift(
    settings: Settings, make_tenant: Callable[..., object]
) -> None:
    """The narrowest crash window: a worker upserted a document's points and died before
    the commit that adds its BM25 statistics (and marks it ready). Discarding those points
    must not subtract statistics that were never added."""
    from datetime import timedelta

    from core.models import utcnow
    from ingest.pipeline import _claim, _parse_and_chunk, process_document, reap_interrupted

    tenant = make_tenant()
    scope: TenantScope = tenant.scope  # type: ignore[attr-defined]
    db = Database.from_settings(settings)
    services = make_services(settings, db)
    indexer = services.indexer
    try:
        with db.session() as session:
            ready = add_document(session, settings, scope, "parking.md", io.BytesIO(SMALL))
        assert process_document(services, scope.tenant_id, ready.document.id,
                                final_attempt=True) == DocumentStatus.READY  # fmt: skip
        body = b"# Lifts\n\n" + b"The goods lift in block D carries at most 800 kg. " * 200
        with db.session() as session:
            crashed = add_document(session, settings, scope, "lifts.md", io.BytesIO(body))
        doc_id = crashed.document.id
        assert _claim(settings, db, scope, doc_id)
        path = settings.files_dir / crashed.document.storage_path
        chunk_ids = _parse_and_chunk(services, scope, doc_id, 1, "lifts.md", path)
        with db.session() as session:  # points upserted, statistics never committed
            chunks = list(session.scalars(select(Chunk).where(Chunk.id.in_(chunk_ids))))
            indexer.index(scope, session, chunks)
            session.rollback()
        assert indexer.count(scope, document_id=doc_id) == len(chunk_ids) > 0
        with db.session() as session:  # its heartbeat stops
            row = session.get(Document, doc_id)
            assert row is not None
            row.heartbeat_at = utcnow() - timedelta(hours=1)
        assert reap_interrupted(services).requeued == [(scope.tenant_id, doc_id)]
        with db.session() as session:
            stats = session.get(Bm25CorpusStat, scope.tenant_id)
            ready_chunks = session.get(Document, ready.document.id).chunk_count  # type: ignore[union-attr]
            assert indexer.count(scope) == ready_chunks
            assert stats is not None and stats.doc_count == ready_chunks
    finally:
        services.close()
        db.dispose()
