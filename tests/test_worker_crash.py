"""A Celery worker killed with SIGKILL in the middle of a large PDF (real worker process,
real Redis broker on a queue of this test's own, PostgreSQL): while it works nothing of the
document is searchable; after a new worker starts, the document ends ``ready`` or
``failed`` with a reason, with no duplicate chunk rows or index points, and the tenant's
BM25 statistics match exactly what the index holds.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
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
from ingest.queue import CeleryQueue
from tests.helpers import REPO_ROOT, SHARED_DATA, make_settings

REDIS_URL = "redis://127.0.0.1:6379/13"
BIG_PDF = SHARED_DATA / "sec-10-q" / "docs" / "2023 Q1 AMZN.pdf"
SMALL = b"# Parking\n\nVisitors park on level two of the west garage; the gate code is 4417.\n"


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


pytestmark = [
    pytest.mark.skipif(not _redis_available(), reason="Redis at 127.0.0.1:6379 is down"),
    pytest.mark.skipif(not BIG_PDF.exists(), reason=f"{BIG_PDF} not found"),
]


@pytest.fixture
def crash_settings(tmp_path: Path, pg_url: str) -> Iterator[Settings]:
    data_dir = tmp_path / "crash-data"
    data_dir.mkdir()
    settings = make_settings(
        data_dir,
        database_url=pg_url,
        task_mode="celery",
        redis_url=REDIS_URL,
        celery_queue=f"ragkb-crash-{uuid.uuid4().hex[:8]}",
        ingest_heartbeat_s=0.5,
        ingest_stale_after_s=3.0,
    )
    yield settings
    redis.Redis.from_url(REDIS_URL).delete(settings.celery_queue)


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKB_")}
    env.update(
        RAGKB_DATA_DIR=str(settings.data_dir),
        RAGKB_DATABASE_URL=settings.sqlalchemy_url,
        RAGKB_TASK_MODE="celery",
        RAGKB_REDIS_URL=REDIS_URL,
        RAGKB_CELERY_QUEUE=settings.celery_queue,
        RAGKB_INGEST_HEARTBEAT_S=str(settings.ingest_heartbeat_s),
        RAGKB_INGEST_STALE_AFTER_S=str(settings.ingest_stale_after_s),
        RAGKB_LOG_JSON="false",
        HF_HUB_OFFLINE="1",
        DO_NOT_TRACK="1",
        SCARF_NO_ANALYTICS="1",
    )
    return env


class Workers:
    """``ragkb worker`` processes started by a test (stopped at its end)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.settings.data_dir / f"worker-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import app; app()", "worker", "--pool", "threads"],
            cwd=REPO_ROOT,
            env=_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """Stop gracefully (the embedded index is flushed and released)."""
        for process in self.started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def workers(crash_settings: Settings) -> Iterator[Workers]:
    running = Workers(crash_settings)
    yield running
    running.stop_all()


def _doc(db: Database, document_id: str) -> Document:
    with db.session() as session:
        document = session.get(Document, document_id)
        assert document is not None
        return document


def _wait(
    db: Database, document_id: str, until: Callable[[Document], bool], timeout: float
) -> Document:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = _doc(db, document_id)
        if until(document):
            return document
        time.sleep(0.05)
    raise AssertionError(f"document {document_id} is {document.status} after {timeout}s")


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
        worker = workers.start()
        with db.session() as session:
            small = add_document(session, settings, scope, "parking.md", io.BytesIO(SMALL))
        queue.submit(scope.tenant_id, small.document.id)
        small_doc = _wait(db, small.document.id, lambda d: d.status == DocumentStatus.READY, 180)

        with db.session() as session:
            big_id = add_document(
                session, settings, scope, BIG_PDF.name, io.BytesIO(BIG_PDF.read_bytes())
            ).document.id
        queue.submit(scope.tenant_id, big_id)
        # Killed once its chunk rows exist and embedding is under way: the worst moment.
        _wait(db, big_id, lambda d: d.status in (DocumentStatus.EMBEDDING,
                                                 DocumentStatus.INDEXING), 120)  # fmt: skip
        time.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert _doc(db, big_id).status in IN_FLIGHT

        # Nothing of the unfinished document is searchable (the index is free now).
        _assert_searchable(settings, db, scope, "Amazon net sales AWS segment", small_doc, big_id)

        workers.start()
        done = _wait(db, big_id, lambda d: d.status not in IN_FLIGHT, 180)
        assert done.status in (DocumentStatus.READY, DocumentStatus.FAILED)
        if done.status == DocumentStatus.FAILED:
            assert done.error and "interrupted" in done.error, done.error
        else:
            assert done.error is None
        workers.stop_all()
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
    from retrieval.indexer import close_indexers
    from retrieval.search import SearchRequest, search

    try:
        with db.session() as session:
            hits = search(settings, session, scope, SearchRequest(query=query, top_k=50)).hits
        assert big_id not in {h.document_id for h in hits}
    finally:
        close_indexers()


def _assert_consistent(
    settings: Settings, db: Database, scope: TenantScope, expected: dict[str, int]
) -> None:
    from retrieval.indexer import close_indexers, get_indexer

    try:
        indexer = get_indexer(settings)
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
        close_indexers()


def test_points_written_without_their_statistics_are_discarded_without_drift(
    settings: Settings, make_tenant: Callable[..., object]
) -> None:
    """The narrowest crash window: a worker upserted a document's points and died before
    the commit that adds its BM25 statistics (and marks it ready). Discarding those points
    must not subtract statistics that were never added."""
    from datetime import timedelta

    from core.models import utcnow
    from ingest.index_handoff import index_chunks
    from ingest.pipeline import _claim, _parse_and_chunk, process_document, reap_interrupted
    from retrieval.indexer import close_indexers, get_indexer

    tenant = make_tenant()
    scope: TenantScope = tenant.scope  # type: ignore[attr-defined]
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            ready = add_document(session, settings, scope, "parking.md", io.BytesIO(SMALL))
        assert process_document(settings, db, scope.tenant_id, ready.document.id,
                                final_attempt=True) == DocumentStatus.READY  # fmt: skip
        body = b"# Lifts\n\n" + b"The goods lift in block D carries at most 800 kg. " * 200
        with db.session() as session:
            crashed = add_document(session, settings, scope, "lifts.md", io.BytesIO(body))
        doc_id = crashed.document.id
        assert _claim(settings, db, scope, doc_id)
        path = settings.files_dir / crashed.document.storage_path
        chunk_ids = _parse_and_chunk(settings, db, scope, doc_id, 1, "lifts.md", path)
        with db.session() as session:  # points upserted, statistics never committed
            chunks = list(session.scalars(select(Chunk).where(Chunk.id.in_(chunk_ids))))
            index_chunks(settings, scope, session, chunks)
            session.rollback()
        indexer = get_indexer(settings)
        assert indexer.count(scope, document_id=doc_id) == len(chunk_ids) > 0
        with db.session() as session:  # its heartbeat stops
            row = session.get(Document, doc_id)
            assert row is not None
            row.heartbeat_at = utcnow() - timedelta(hours=1)
        assert reap_interrupted(settings, db) == [doc_id]
        with db.session() as session:
            stats = session.get(Bm25CorpusStat, scope.tenant_id)
            ready_chunks = session.get(Document, ready.document.id).chunk_count  # type: ignore[union-attr]
            assert indexer.count(scope) == ready_chunks
            assert stats is not None and stats.doc_count == ready_chunks
    finally:
        close_indexers()
        db.dispose()
