"""Where tasks run: one interface, :class:`TaskQueue`, with two implementations.

:class:`InProcessQueue` (embedded mode, no broker) runs the registered task bodies on
thread pools inside this process, one per queue kind as Celery has one queue per kind:
heavy tasks (ingestion) on ``RAGKB_INGEST_WORKERS`` threads, light ones (eval runs) on one
thread of their own, so they never wait behind ingestion. Each pool takes its tasks
tenant by tenant (round robin over the tenants with work waiting) and runs at most
``RAGKB_INGEST_TENANT_MAX_IN_FLIGHT`` of one tenant's heavy tasks at once: one tenant's
hundred large files leave a worker for everyone else's, and another tenant's small file is
next in line rather than behind all of them. It also does what Celery's
broker and the workers' periodic reaper do in production: on start it recovers what a
previous process left (its tasks lived in that process's memory), and a reaper thread runs
``TaskName.REAP_INTERRUPTED`` every interval. :class:`CeleryQueue` sends tasks by name
to Celery workers (``ragkb worker``) through the broker.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

from celery import Celery

from core.metrics import QUEUE_DEPTH
from core.settings import Settings
from tasks.celery_app import make_celery, reap_interval_s
from tasks.names import QueueKind, TaskName, queue_kind
from tasks.registry import Task, registered

log = logging.getLogger("ragkb.tasks")


class TaskQueue(Protocol):
    def submit(self, name: TaskName, *args: Any, tenant: str | None = None) -> None:
        """Queue task ``name``; whatever it works on (a document, a run) is committed
        with status ``queued``. ``tenant``: whose work it is, for fair scheduling
        (default: the first argument, which is the tenant id of an ingestion task)."""

    def close(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """For ``/readyz``: raises when tasks cannot be queued."""


# Given the queue, the context task bodies receive (the process's services, through which
# a body may submit follow-up tasks to the same queue).
ContextFactory = Callable[[TaskQueue], Any]


class _Lane:
    """The worker threads of one queue kind, taking tasks fairly between tenants: the
    next task is the oldest of the next tenant in turn (round robin over the tenants with
    tasks waiting) that has fewer than ``per_tenant`` tasks running."""

    def __init__(
        self,
        workers: int,
        label: str,
        per_tenant: int,
        run: Callable[[Task, tuple[Any, ...]], None],
        *,
        wait_on_close: bool,
    ) -> None:
        self.label = label
        self.wait_on_close = wait_on_close
        self._per_tenant = per_tenant
        self._run = run
        self._ready = threading.Condition()
        self._waiting: dict[str, deque[tuple[Task, tuple[Any, ...]]]] = {}
        self._turns: deque[str] = deque()  # tenants with tasks waiting, next first
        self._running: Counter[str] = Counter()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{label}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, tenant: str, task: Task, args: tuple[Any, ...]) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the task queue is closed")
            if tenant not in self._waiting:
                self._waiting[tenant] = deque()
                self._turns.append(tenant)
            self._waiting[tenant].append((task, args))
            self._publish_depth()
            self._ready.notify()

    def _take(self) -> tuple[str, Task, tuple[Any, ...]] | None:
        """The next task in turn (called with the condition held), or None."""
        for _ in range(len(self._turns)):
            tenant = self._turns[0]
            self._turns.rotate(-1)  # whether it runs now or not, the next tenant is next
            if self._running[tenant] >= self._per_tenant:
                continue
            waiting = self._waiting[tenant]
            task, args = waiting.popleft()
            if not waiting:
                del self._waiting[tenant]
                self._turns.remove(tenant)
            self._running[tenant] += 1
            return tenant, task, args
        return None

    def _work(self) -> None:
        while True:
            with self._ready:
                while (taken := self._take()) is None:
                    if self._closed:
                        return
                    self._ready.wait()
            tenant, task, args = taken
            try:
                self._run(task, args)
            finally:
                with self._ready:
                    self._running[tenant] -= 1
                    if not self._running[tenant]:
                        del self._running[tenant]
                    self._publish_depth()
                    self._ready.notify_all()  # that tenant's next task may run now

    def pending(self) -> int:
        with self._ready:
            return self._pending()

    def _pending(self) -> int:
        return sum(len(w) for w in self._waiting.values()) + sum(self._running.values())

    def _publish_depth(self) -> None:
        QUEUE_DEPTH.labels(queue=self.label).set(self._pending())

    def close(self) -> None:
        """Stop taking tasks (those waiting are dropped: the reaper resumes them on the
        next start); wait for the ones running when ``wait_on_close``."""
        with self._ready:
            self._closed = True
            self._waiting.clear()
            self._turns.clear()
            self._publish_depth()
            self._ready.notify_all()
        if self.wait_on_close:
            for thread in self._threads:
                thread.join()


class InProcessQueue:
    """Thread pools in this process, one per queue kind, and the reaper thread."""

    def __init__(self, settings: Settings, context: ContextFactory) -> None:
        self.settings = settings
        self._tasks = registered()
        workers = settings.ingest.workers
        per_tenant = settings.ingest.tenant_max_in_flight or max(1, workers - 1)
        self._lanes = {
            # Shutting down waits for the documents in hand; an eval run may take hours.
            QueueKind.HEAVY: _Lane(
                workers, "ingest", min(per_tenant, workers), self._run, wait_on_close=True
            ),
            QueueKind.LIGHT: _Lane(1, "light", 1, self._run, wait_on_close=False),
        }
        self._stop = threading.Event()
        self._context = context(self)
        self._reaper = threading.Thread(target=self._reap_forever, name="reaper", daemon=True)

    def start(self) -> InProcessQueue:
        for task in self._tasks.values():
            if task.recover is not None:
                task.recover(self._context)
        self._reaper.start()
        return self

    def submit(self, name: TaskName, *args: Any, tenant: str | None = None) -> None:
        fair_key = tenant if tenant is not None else str(args[0]) if args else ""
        self._lanes[queue_kind(name)].submit(fair_key, self._tasks[name], args)

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
            self._lanes[kind].close()

    def health(self) -> dict[str, Any]:
        pending = sum(lane.pending() for lane in self._lanes.values())
        return {"mode": "inprocess", "pending": pending}


class CeleryQueue:
    """Sends tasks by name to Celery workers (``ragkb worker``) through the broker; the
    routes (:func:`tasks.celery_app.task_routes`) pick the queue."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self._owned = app is None
        self.app = app or make_celery(settings)

    def submit(self, name: TaskName, *args: Any, tenant: str | None = None) -> None:
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
