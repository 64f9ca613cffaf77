"""One ``Services`` object per process, built from ``Settings``.

It replaces the process-wide caches the parts used to keep (indexer, embedders, reranker,
generator): whoever starts a process (the API's lifespan, a CLI command, a Celery worker,
a test) builds one with :func:`build_services`, hands it on, and closes it when done;
FastAPI routes get it through ``api.deps.ServicesDep``. Heavy parts load on first use
(model weights when the first text is embedded, the embedded index when first opened, a
cross-encoder on the first rerank), so building one is cheap. Tests build their own and
may pass any part in (a shared embedder, a generator of their own).

Pattern: R2R's providers assembled in one factory (``core/main/assembly/factory.py``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from core.db import Database
from core.settings import Settings
from generation.generator import Generator, build_generator
from generation.generator import readiness as generator_readiness
from retrieval.embedding import DenseEmbedder
from retrieval.indexer import ChunkIndexer
from retrieval.rerank import Reranker, load_reranker, reranker_state

if TYPE_CHECKING:  # celery is imported only where tasks are queued
    from tasks.queue import TaskQueue


class Services:
    """The parts one process shares: every thread of the process uses the same ones.

    ``task_queue`` is set by whoever makes the process's queue (``tasks.queue.make_queue``
    in the API's lifespan, ``services.worker`` in a Celery worker): task bodies submit
    follow-up tasks through it. A CLI command that does the work itself has none."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        embedder: DenseEmbedder | None = None,
        query_embedder: DenseEmbedder | None = None,
        reranker: Reranker | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        # The indexer holds the embedders: two instances of the same model, so that a search
        # never waits behind an ingestion batch (``indexer.embedder``, ``.query_embedder``).
        self.indexer = ChunkIndexer(
            settings,
            embedder or DenseEmbedder.from_settings(settings),
            query_embedder or DenseEmbedder.from_settings(settings),
        )
        self.generator = generator or build_generator(settings)
        self.task_queue: TaskQueue | None = None
        self._reranker = reranker
        self._reranker_lock = threading.Lock()

    @property
    def reranker(self) -> Reranker:
        """The second stage, loaded on first use (a cross-encoder takes seconds)."""
        if self._reranker is None:
            with self._reranker_lock:  # two first requests must not load it twice
                if self._reranker is None:
                    self._reranker = load_reranker(self.settings)
        return self._reranker

    def index_health(self) -> dict[str, Any]:
        """``/readyz``'s index check: engine, size, models (loads no reranker)."""
        return {
            **self.indexer.health(),
            **reranker_state(self.settings, self._reranker),
        }

    def generator_health(self) -> dict[str, Any]:
        """``/readyz``'s generator check; raises ``GeneratorUnavailable`` saying why."""
        return generator_readiness(self.generator)

    def close(self) -> None:
        """Flush and close the index (the embedded one is one process's at a time). The
        database belongs to whoever passed it in; :func:`build_services` callers that let
        it make one close that with ``services.db.dispose()``."""
        self.indexer.close()


def build_services(settings: Settings, db: Database | None = None, **parts: Any) -> Services:
    """The process's services for these settings; ``parts`` replace any of the defaults
    (``embedder``, ``query_embedder``, ``reranker``, ``generator``)."""
    return Services(settings, db or Database.from_settings(settings), **parts)
