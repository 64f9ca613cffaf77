"""Where tasks run: one interface, :class:`TaskQueue`, with two implementations.

:class:`InProcessQueue` (embedded mode, no broker) runs the registered task bodies on
thread pools inside this process, one per queue kind as Celery has one queue per kind:
heavy tasks (ingestion) on ``RAGKB_INGEST_WORKERS`` threads, light ones (eval runs) on one
thread of their own, so they never wait behind ingestion. It also does what Celery's
broker and the workers' periodic reaper do in production: on start it recovers what a
previous process left (its tasks lived in that process's memory), and a reaper thread runs
``TaskName.REAP_INTERRUPTED`` every interval. :class:`CeleryQueue` sends tasks by name
to Celery workers (``ragkb worker``) through the broker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from celery import Celery

from core.metrics import QUEUE_DEPTH
from core.settings import Settings
from tasks.celery_app import make_celery, reap_interval_s
from tasks.names import QueueKind, TaskName, queue_kind
from tasks.registry import Task, registered

log = logging.getLogger("ragkb.tasks")


class TaskQueue(Protocol):
    def submit(self, name: TaskName, *args: Any) -> None:
        """Queue task ``name``; whatever it works on (a document, a run) is committed
        with status ``queued``."""

    def close(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """For ``/readyz``: raises when tasks cannot be queued."""


# Given the queue, the context task bodies receive (the process's services, through which
# a body may submit follow-up tasks to the same queue).
ContextFactory = Callable[[TaskQueue], Any]


class _Lane:
    """The thread pool of one queue kind."""

    def __init__(self, workers: int, label: str, *, wait_on_close: bool) -> None:
        self.label = label
        self.wait_on_close = wait_on_close
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=label)
        self.pending: set[Future[None]] = set()


class InProcessQueue:
    """Thread pools in this process, one per queue kind, and the reaper thread."""

    def __init__(self, settings: Settings, context: ContextFactory) -> None:
        self.settings = settings
        self._tasks = registered()
        self._lanes = {
            # Shutting down waits for the documents in hand; an eval run may take hours.
            QueueKind.HEAVY: _Lane(settings.ingest.workers, "ingest", wait_on_close=True),
            QueueKind.LIGHT: _Lane(1, "light", wait_on_close=False),
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._context = context(self)
        self._reaper = threading.Thread(target=self._reap_forever, name="reaper", daemon=True)

    def start(self) -> InProcessQueue:
        for task in self._tasks.values():
            if task.recover is not None:
                task.recover(self._context)
        self._reaper.start()
        return self

    def submit(self, name: TaskName, *args: Any) -> None:
        lane = self._lanes[queue_kind(name)]
        future = lane.pool.submit(self._run, self._tasks[name], args)
        with self._lock:
            lane.pending.add(future)
            QUEUE_DEPTH.labels(queue=lane.label).set(len(lane.pending))
        future.add_done_callback(lambda done: self._forget(lane, done))

    def _forget(self, lane: _Lane, future: Future[None]) -> None:
        with self._lock:
            lane.pending.discard(future)
            QUEUE_DEPTH.labels(queue=lane.label).set(len(lane.pending))

    def _run(self, task: Task, args: tuple[Any, ...]) -> None:
        try:
            task.run(self._context, self.settings, *args, stopped=self._stop.is_set)
        except Exception:  # never let one task kill the pool thread silently
            log.exception("task %s%s crashed", task.name, args)

    def _reap_forever(self) -> None:
        # In the background: the API starts (and reports /readyz) even when the database
        # is not reachable yet.
        reap = self._tasks[TaskName.REAP_INTERRUPTED].body
        resumed = False
        while True:
            try:
                # The first pass also resumes every queued document: their tasks lived in
                # a previous process's memory.
                reap(self._context, not resumed)
                resumed = True
            except Exception:
                log.warning("reaping or resuming documents failed", exc_info=True)
            if self._stop.wait(reap_interval_s(self.settings)):
                return

    def close(self) -> None:
        self._stop.set()
        for kind in (QueueKind.LIGHT, QueueKind.HEAVY):
            lane = self._lanes[kind]
            lane.pool.shutdown(wait=lane.wait_on_close, cancel_futures=True)

    def health(self) -> dict[str, Any]:
        with self._lock:
            pending = sum(len(lane.pending) for lane in self._lanes.values())
        return {"mode": "inprocess", "pending": pending}


class CeleryQueue:
    """Sends tasks by name to Celery workers (``ragkb worker``) through the broker; the
    routes (:func:`tasks.celery_app.task_routes`) pick the queue."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self._owned = app is None
        self.app = app or make_celery(settings)

    def submit(self, name: TaskName, *args: Any) -> None:
        self.app.send_task(str(name), args=list(args))

    def close(self) -> None:
        if self._owned:  # a worker's own app is the worker's to close
            self.app.close()

    def health(self) -> dict[str, Any]:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return {
            "mode": "celery",
            "queue": self.settings.tasks.celery_queue,
            "light_queue": self.settings.tasks.celery_light_queue,
        }


def make_queue(settings: Settings, context: ContextFactory) -> TaskQueue:
    """The queue ``settings.tasks.mode`` names. ``context`` is called with it once: in
    Celery mode the bodies run in the workers, with their own context, but the caller's
    services get the queue all the same."""
    if settings.tasks.mode == "celery":
        queue = CeleryQueue(settings)
        context(queue)
        return queue
    return InProcessQueue(settings, context).start()
