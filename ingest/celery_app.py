"""Celery wiring for production: Redis broker and result backend, two queues, tasks
acknowledged late (a killed worker's task is delivered again), retried with exponential
backoff on transient errors, and bounded in time and memory per document.

Two queues, routed by task name so a new task lands on the right one without its sender
choosing: ``ragkb.ingest.*`` (parse, chunk, embed, index: seconds to many minutes, lots of
memory) goes to the heavy queue (``RAGKB_CELERY_QUEUE``), consumed with prefetch 1 so a
worker never holds a second large PDF while it works on one; every other ``ragkb.*`` task
(eval runs, housekeeping) goes to the light queue (``RAGKB_CELERY_LIGHT_QUEUE``), whose
workers prefetch more and never wait behind a large document.

Interrupted documents (heartbeat stopped: a killed worker or pod) are queued again, or
failed once they have used up ``RAGKB_INGEST_MAX_ATTEMPTS``, by the periodic task
``ragkb.maintenance.reap_interrupted``. Every worker runs a small scheduler thread, and a
Redis lock lets only one of them send the task per interval, so any surviving worker keeps
reaping and several workers never reap twice (no separate beat process to keep alive).
With the embedded index (no Qdrant server) the task goes to the heavy queue instead: the
heavy worker is the one process that may open the index.

``ragkb worker --queues heavy|light`` runs a worker; ``celery -A ingest.celery_app worker``
works too.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery import Celery, signals
from kombu import Queue

from core.settings import Settings, get_settings
from services.container import Services, build_services

log = logging.getLogger("ragkb.ingest")

TASK_NAME = "ragkb.ingest.process_document"
# Defined in eval.tasks, which the worker imports by name (ingest never imports eval).
EVAL_TASK_NAME = "ragkb.eval.run"
REAP_TASK_NAME = "ragkb.maintenance.reap_interrupted"
# Prefetch per worker process: one for heavy tasks (a prefetched PDF would wait behind the
# one being parsed while another worker sits idle); several for short light tasks.
HEAVY_PREFETCH = 1
LIGHT_PREFETCH = 4
# A worker child process is replaced after it grows past this (KiB): parsing libraries
# can hold memory, and one large document must not weigh on every later one.
_MAX_MEMORY_PER_CHILD_KB = 2 * 1024 * 1024
# Unacknowledged tasks come back after the longest task plus this margin (seconds).
_VISIBILITY_MARGIN_S = 300


def broker_url(settings: Settings) -> str:
    url = settings.broker_url or settings.redis_url
    if not url:
        raise RuntimeError("RAGKB_TASK_MODE=celery needs RAGKB_BROKER_URL or RAGKB_REDIS_URL")
    return url


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Ingestion to the heavy queue, any other task of ours to the light one (glob patterns,
    tried in order)."""
    return {
        "ragkb.ingest.*": {"queue": settings.celery_queue},
        "ragkb.*": {"queue": settings.celery_light_queue},
    }


def visibility_timeout_s(settings: Settings) -> int:
    """Longer than any task may run (the hard time limit), or Redis would hand a task that
    is still running to a second worker."""
    return max(settings.ingest_time_limit_s, settings.eval_time_limit_s) + _VISIBILITY_MARGIN_S


def reap_queue(settings: Settings) -> str:
    """The light queue with a Qdrant server; the heavy one with the embedded index, which
    only the heavy worker's process may open (discarding partial points needs it)."""
    return settings.celery_light_queue if settings.qdrant_url else settings.celery_queue


def reap_interval_s(settings: Settings) -> float:
    return max(1.0, settings.ingest_stale_after_s / 2)


QUEUE_KINDS = ("heavy", "light")


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
    unknown = sorted(set(kinds) - set(QUEUE_KINDS))
    if unknown or not kinds:
        raise ValueError(f"--queues takes heavy, light or heavy,light (got {queues!r})")
    names = {"heavy": settings.celery_queue, "light": settings.celery_light_queue}
    prefetch = HEAVY_PREFETCH if "heavy" in kinds else light_prefetch
    roles: dict[tuple[str, ...], str] = {("heavy",): "ragkb-ingest", ("light",): "ragkb-light"}
    role = roles.get(tuple(kinds), "ragkb")
    return [
        "worker",
        f"--queues={','.join(names[k] for k in kinds)}",
        f"--concurrency={concurrency}",
        f"--prefetch-multiplier={prefetch}",
        f"--pool={pool or ('prefork' if settings.qdrant_url else 'threads')}",
        f"--loglevel={loglevel}",
        f"--hostname={role}@%h",
    ]


def make_celery(settings: Settings) -> Celery:
    url = broker_url(settings)
    # eval.tasks holds the light queue's eval task (imported by the worker, by name).
    app = Celery("ragkb", broker=url, backend=settings.redis_url or url, include=["eval.tasks"])
    heavy, light = settings.celery_queue, settings.celery_light_queue
    app.conf.update(
        task_queues=[Queue(heavy), Queue(light)],
        task_default_queue=light,
        task_routes=task_routes(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=HEAVY_PREFETCH,
        # No task may run longer than this (ingestion also gets it per task, below).
        task_time_limit=settings.ingest_time_limit_s,
        task_soft_time_limit=int(settings.ingest_time_limit_s * 0.9),
        # Eval runs (registered by name in eval.tasks) get their own, longer limit.
        task_annotations={
            EVAL_TASK_NAME: {
                "time_limit": settings.eval_time_limit_s,
                "soft_time_limit": int(settings.eval_time_limit_s * 0.9),
            }
        },
        worker_max_memory_per_child=_MAX_MEMORY_PER_CHILD_KB,
        result_expires=24 * 3600,
        # An unacknowledged task returns to the queue after this long (a killed worker).
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        result_backend_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        broker_connection_retry_on_startup=True,
    )
    _register(app, settings)
    return app


_worker_services: dict[str, Services] = {}
_state_lock = threading.Lock()


def _services(settings: Settings) -> Services:
    """The worker process's one ``Services``, built on its first task (after the fork: a
    prefork child must not inherit its parent's connections or index)."""
    with _state_lock:
        if "services" not in _worker_services:
            _worker_services["services"] = build_services(settings)
        return _worker_services["services"]


def _register(app: Celery, settings: Settings) -> None:
    # shared=False: each app (one per Settings) gets its own tasks with its own settings;
    # shared tasks would be copied into every later app with the first app's settings.
    @app.task(
        name=TASK_NAME,
        shared=False,
        bind=True,
        max_retries=settings.ingest_retries,
        acks_late=True,
        reject_on_worker_lost=True,
        # Per document: the soft limit fails it inside with a message; the hard limit kills
        # the child, and the reaper fails the document then.
        time_limit=settings.ingest_time_limit_s,
        soft_time_limit=int(settings.ingest_time_limit_s * 0.9),
    )
    def process_document_task(self: Any, tenant_id: str, document_id: str) -> str | None:
        from ingest.errors import TransientError
        from ingest.pipeline import process_document

        final = self.request.retries >= settings.ingest_retries
        try:
            status = process_document(
                _services(settings), tenant_id, document_id, final_attempt=final
            )
        except TransientError as exc:
            countdown = min(2 ** (self.request.retries + 1), 300)
            raise self.retry(exc=exc, countdown=countdown) from exc
        return status.value if status else None

    # Reaping is short; a run that overlaps the next one is harmless (rows are locked,
    # skip-locked), but it must never hold a worker for long.
    limit = max(30, int(reap_interval_s(settings) * 4))

    @app.task(
        name=REAP_TASK_NAME,
        shared=False,
        acks_late=False,
        time_limit=limit,
        soft_time_limit=limit - 5,
    )
    def reap_interrupted_task() -> dict[str, list[str]]:
        """Requeued documents go back to the heavy queue; returns what was done."""
        from ingest.pipeline import reap_interrupted

        reaped = reap_interrupted(_services(settings))
        for tenant_id, document_id in reaped.requeued:
            app.send_task(TASK_NAME, args=[tenant_id, document_id], queue=settings.celery_queue)
        return {"requeued": [d for _, d in reaped.requeued], "failed": reaped.failed}


def schedule_reaping_once(app: Celery, settings: Settings, client: redis.Redis) -> bool:
    """Send the reap task unless another worker did within this interval (a Redis lock
    that expires with the interval); returns whether this call sent it."""
    interval = reap_interval_s(settings)
    queue = reap_queue(settings)
    key = f"ragkb:reaper:{queue}"
    if not client.set(key, "1", nx=True, px=int(interval * 1000)):
        return False
    # A reap task that waited past the next interval is dropped, not run late.
    app.send_task(REAP_TASK_NAME, queue=queue, expires=interval * 2)
    return True


def _start_reap_scheduler(app: Celery, settings: Settings) -> threading.Event:
    stop = threading.Event()
    interval = reap_interval_s(settings)
    client = redis.Redis.from_url(
        settings.redis_url or broker_url(settings), socket_connect_timeout=2, socket_timeout=2
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


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    celery_app = getattr(sender, "app", None) or make_celery(settings)
    _start_reap_scheduler(celery_app, settings)
    if settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_port)


# For `celery -A ingest.celery_app worker`.
app = make_celery(get_settings()) if get_settings().task_mode == "celery" else None
