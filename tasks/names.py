"""Every task name, written once, and which kind of queue each one goes to.

The names are the wire names in Celery messages (and in workers' logs): changing one
strands the messages already queued under the old one. Routing is by name so that a new
task lands on the right queue without its sender choosing: ``ragkb.ingest.*`` (parse,
chunk, embed, index: seconds to many minutes, lots of memory) is heavy, every other task of
ours (eval runs, housekeeping) is light and never waits behind a large document. Both the
Celery routes and the in-process executors follow :func:`queue_kind`. Pattern: onyx
``OnyxCeleryTask``.
"""

from __future__ import annotations

from enum import StrEnum
from fnmatch import fnmatchcase


class TaskName(StrEnum):
    INGEST_DOCUMENT = "ragkb.ingest.process_document"
    # One document's chunks indexed again with its current metadata (after a PATCH).
    REINDEX_DOCUMENT = "ragkb.ingest.reindex_document"
    EVAL_RUN = "ragkb.eval.run"
    REAP_INTERRUPTED = "ragkb.maintenance.reap_interrupted"


class QueueKind(StrEnum):
    """The two kinds of queue (also the values of ``ragkb worker --queues``)."""

    HEAVY = "heavy"
    LIGHT = "light"


# Glob patterns over task names (Celery's task_routes syntax), tried in order.
HEAVY_TASKS = "ragkb.ingest.*"
OUR_TASKS = "ragkb.*"


def queue_kind(name: str) -> QueueKind:
    return QueueKind.HEAVY if fnmatchcase(name, HEAVY_TASKS) else QueueKind.LIGHT
