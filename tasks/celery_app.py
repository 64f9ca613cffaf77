"""Celery wiring for production: Redis broker and result backend, two queues, tasks
acknowledged late (a killed worker's task is delivered again), retried with exponential
backoff on transient errors, and bounded in time and memory per task. No task bodies: they
live with their work and are registered by name (:mod:`tasks.registry`).

Two queues, routed by task name (:func:`tasks.names.queue_kind`): heavy tasks (ingestion)
go to ``RAGKB_CELERY_QUEUE``, consumed with prefetch 1 so a worker never holds a second
large PDF while it works on one; light ones (eval runs, housekeeping) to
``RAGKB_CELERY_LIGHT_QUEUE``, whose workers prefetch more and never wait behind a large
document.

Interrupted documents (heartbeat stopped: a killed worker or pod) are queued again, or
failed once they have used up ``RAGKB_INGEST_MAX_ATTEMPTS``, by the periodic task
``TaskName.REAP_INTERRUPTED``. Every worker runs a small scheduler thread, and a Redis lock
lets only one of them send the task per interval, so any surviving worker keeps reaping
and several workers never reap twice (no separate beat process to keep alive). With the
embedded index (no Qdrant server) the task goes to the heavy queue instead: the heavy
worker is the one process that may open the index.

A worker's app is made with a ``context`` factory (:mod:`services.worker`): each worker
process builds the context its task bodies receive once, on its first task.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, signals
from kombu import Queue

from core.settings import Settings, get_settings
from tasks.names import HEAVY_TASKS, OUR_TASKS, QueueKind, TaskName
from tasks.registry import Task, registered

log = logging.getLogger("ragkb.tasks")

# Prefetch per worker process: one for heavy tasks (a prefetched PDF would wait behind the
# one being parsed while another worker sits idle); several for short light tasks.
HEAVY_PREFETCH = 1
LIGHT_PREFETCH = 4
# A worker child process is replaced after it grows past this (KiB): parsing libraries
# can hold memory, and one large document must not weigh on every later one.
_MAX_MEMORY_PER_CHILD_KB = 2 * 1024 * 1024
# Unacknowledged tasks come back after the longest task plus this margin (seconds).
_VISIBILITY_MARGIN_S = 300

# Given the worker's app, the context its task bodies receive (built once per process).
WorkerContextFactory = Callable[[Celery], Any]


def broker_url(settings: Settings) -> str:
    url = settings.tasks.broker_url or settings.storage.redis_url
    if not url:
        raise RuntimeError("RAGKB_TASK_MODE=celery needs RAGKB_BROKER_URL or RAGKB_REDIS_URL")
    return url


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Heavy tasks to the heavy queue, any other task of ours to the light one (glob
    patterns, tried in order)."""
    return {
        HEAVY_TASKS: {"queue": settings.tasks.celery_queue},
        OUR_TASKS: {"queue": settings.tasks.celery_light_queue},
    }


def visibility_timeout_s(settings: Settings) -> int:
    """Longer than any task may run (the hard time limit), or Redis would hand a task that
    is still running to a second worker."""
    return max(settings.ingest.time_limit_s, settings.eval.time_limit_s) + _VISIBILITY_MARGIN_S


def reap_queue(settings: Settings) -> str:
    """The light queue with a Qdrant server; the heavy one with the embedded index, which
    only the heavy worker's process may open (discarding partial points needs it)."""
    return (
        settings.tasks.celery_light_queue
        if settings.index.qdrant_url
        else settings.tasks.celery_queue
    )


def reap_interval_s(settings: Settings) -> float:
    return max(1.0, settings.ingest.stale_after_s / 2)


def task_options(settings: Settings) -> dict[TaskName, dict[str, Any]]:
    """Each task's Celery options: delivery and time limits."""
    ingest_limit = settings.ingest.time_limit_s
    eval_limit = settings.eval.time_limit_s
    # Reaping is short; a run that overlaps the next one is harmless (rows are locked,
    # skip-locked), but it must never hold a worker for long.
    reap_limit = max(30, int(reap_interval_s(settings) * 4))
    return {
        TaskName.INGEST_DOCUMENT: {
            "acks_late": True,
            "reject_on_worker_lost": True,
            # Per document: the soft limit fails it inside with a message; the hard limit
            # kills the child, and the reaper fails the document then.
            "time_limit": ingest_limit,
            "soft_time_limit": int(ingest_limit * 0.9),
        },
        # Re-embedding one document's chunks: bounded like processing it.
        TaskName.REINDEX_DOCUMENT: {
            "acks_late": True,
            "time_limit": ingest_limit,
            "soft_time_limit": int(ingest_limit * 0.9),
        },
        # An eval run outlasts any one document: its own, longer limit.
        TaskName.EVAL_RUN: {
            "acks_late": True,
            "time_limit": eval_limit,
            "soft_time_limit": int(eval_limit * 0.9),
        },
        TaskName.REAP_INTERRUPTED: {
            "acks_late": False,
            "time_limit": reap_limit,
            "soft_time_limit": reap_limit - 5,
        },
    }


def worker_argv(
    settings: Settings,
    queues: str = "heavy,light",
    *,
    concurrency: int = 1,
    pool: str | None = None,
    loglevel: str = "INFO",
    light_prefetch: int = LIGHT_PREFETCH,
) -> list[str]:
    """The ``celery worker`` arguments for ``ragkb worker --queues KINDS`` (``heavy``,
    ``light`` or both, comma-separated): prefetch 1 whenever the heavy queue is consumed.
    Default pool: prefork with a Qdrant server, threads with the embedded index (which
    one process only may open)."""
    kinds = [k.strip() for k in queues.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(QueueKind))
    if unknown or not kinds:
        raise ValueError(f"--queues takes heavy, light or heavy,light (got {queues!r})")
    names = {
        QueueKind.HEAVY: settings.tasks.celery_queue,
        QueueKind.LIGHT: settings.tasks.celery_light_queue,
    }
    prefetch = HEAVY_PREFETCH if QueueKind.HEAVY in kinds else light_prefetch
    roles: dict[tuple[str, ...], str] = {
        (QueueKind.HEAVY,): "ragkb-ingest",
        (QueueKind.LIGHT,): "ragkb-light",
    }
    role = roles.get(tuple(kinds), "ragkb")
    return [
        "worker",
        f"--queues={','.join(names[QueueKind(k)] for k in kinds)}",
        f"--concurrency={concurrency}",
        f"--prefetch-multiplier={prefetch}",
        f"--pool={pool or ('prefork' if settings.index.qdrant_url else 'threads')}",
        f"--loglevel={loglevel}",
        f"--hostname={role}@%h",
    ]


def make_celery(settings: Settings, context: WorkerContextFactory | None = None) -> Celery:
    """The Celery app. With ``context`` (a worker's), every registered task body is added
    to it; without, it only sends tasks by name."""
    url = broker_url(settings)
    app = Celery("ragkb", broker=url, backend=settings.storage.redis_url or url)
    heavy, light = settings.tasks.celery_queue, settings.tasks.celery_light_queue
    app.conf.update(
        task_queues=[Queue(heavy), Queue(light)],
        task_default_queue=light,
        task_routes=task_routes(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=HEAVY_PREFETCH,
        # No task may run longer than this (each task also gets its own, task_options).
        task_time_limit=settings.ingest.time_limit_s,
        task_soft_time_limit=int(settings.ingest.time_limit_s * 0.9),
        worker_max_memory_per_child=_MAX_MEMORY_PER_CHILD_KB,
        result_expires=24 * 3600,
        # An unacknowledged task returns to the queue after this long (a killed worker).
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        result_backend_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        broker_connection_retry_on_startup=True,
    )
    if context is not None:
        per_process = _PerProcess(app, context)
        options = task_options(settings)
        for name, spec in registered().items():
            _add_task(app, settings, spec, options[name], per_process)
    return app


class _PerProcess:
    """The context of this worker process, built on its first task: prefork children each
    build their own (a database pool must not cross a fork); threads share one."""

    def __init__(self, app: Celery, factory: WorkerContextFactory) -> None:
        self._app = app
        self._factory = factory
        self._lock = threading.Lock()
        self._built: tuple[int, Any] | None = None

    def get(self) -> Any:
        with self._lock:
            if self._built is None or self._built[0] != os.getpid():
                self._built = (os.getpid(), self._factory(self._app))
            return self._built[1]


def _add_task(
    app: Celery, settings: Settings, spec: Task, options: dict[str, Any], context: _PerProcess
) -> None:
    retry = spec.retry
    if retry is not None:
        options = options | {"max_retries": retry.times(settings)}

    # shared=False: each app (one per Settings) gets its own tasks with its own settings;
    # shared tasks would be copied into every later app with the first app's settings.
    @app.task(name=str(spec.name), shared=False, bind=True, **options)
    def run(self: Any, *args: Any) -> Any:
        services = context.get()
        if retry is None:
            return spec.body(services, *args)
        final = self.request.retries >= self.max_retries
        try:
            return spec.body(services, *args, final_attempt=final)
        except retry.on as exc:
            countdown = min(2 ** (self.request.retries + 1), 300)
            raise self.retry(exc=exc, countdown=countdown) from exc


def schedule_reaping_once(app: Celery, settings: Settings, client: redis.Redis) -> bool:
    """Send the reap task unless another worker did within this interval (a Redis lock
    that expires with the interval); returns whether this call sent it."""
    interval = reap_interval_s(settings)
    queue = reap_queue(settings)
    key = f"ragkb:reaper:{queue}"
    if not client.set(key, "1", nx=True, px=int(interval * 1000)):
        return False
    # A reap task that waited past the next interval is dropped, not run late.
    app.send_task(str(TaskName.REAP_INTERRUPTED), queue=queue, expires=interval * 2)
    return True


def _start_reap_scheduler(app: Celery, settings: Settings) -> threading.Event:
    stop = threading.Event()
    interval = reap_interval_s(settings)
    client = redis.Redis.from_url(
        settings.storage.redis_url or broker_url(settings),
        socket_connect_timeout=2,
        socket_timeout=2,
    )

    def loop() -> None:
        while True:
            try:
                schedule_reaping_once(app, settings, client)
            except Exception:  # Redis or the broker is down: the next interval tries again
                log.warning("scheduling the reaper failed", exc_info=True)
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="reap-scheduler", daemon=True).start()
    return stop


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Prometheus metrics of this worker (ingest stage latencies and failures are recorded
    here, not in the API) on ``port``; with ``PROMETHEUS_MULTIPROC_DIR`` the prefork
    children's values are added up."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)


_worker_state: dict[str, Any] = {}


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    celery_app = getattr(sender, "app", None) or make_celery(settings)
    _worker_state["reap_scheduler"] = _start_reap_scheduler(celery_app, settings)
    if settings.observability.worker_metrics_port:
        serve_metrics(settings.observability.worker_metrics_port)
