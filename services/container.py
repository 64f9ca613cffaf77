"""One ``Services`` object per process, built from ``Settings``.

It replaces the process-wide caches the parts used to keep (indexer, embedders, reranker,
generator): whoever starts a process (the API's lifespan, the CLI, a Celery worker, a test)
builds one with :func:`build_services` and hands it on; FastAPI routes get it through
``api.deps``. Heavy parts (models, the embedded index) load on first use, so building it is
cheap. Pattern: R2R's providers assembled in one factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from core.db import Database
from core.settings import Settings
from generation.generator import Generator, build_generator
from retrieval.indexer import ChunkIndexer, get_indexer
from retrieval.rerank import Reranker, get_reranker

if TYPE_CHECKING:  # celery is imported only where tasks are queued
    from tasks.queue import TaskQueue


@dataclass
class Services:
    """The parts one process shares: every thread of the process uses the same ones."""

    settings: Settings
    db: Database
    # Set by whoever makes the process's queue (tasks.queue.make_queue, a Celery worker):
    # task bodies submit follow-up tasks through it.
    task_queue: TaskQueue | None = None

    @cached_property
    def indexer(self) -> ChunkIndexer:
        """The index (opened on first use) and the document and query embedders."""
        return get_indexer(self.settings)

    @cached_property
    def reranker(self) -> Reranker:
        return get_reranker(self.settings)

    @cached_property
    def generator(self) -> Generator:
        return build_generator(self.settings)

    def close(self) -> None:
        """Flush and close what the process opened (the index, the database pool)."""
        if "indexer" in self.__dict__:
            self.indexer.close()


def build_services(settings: Settings, db: Database | None = None) -> Services:
    return Services(settings=settings, db=db or Database.from_settings(settings))
