"""The application factory: one place assembles settings, the process's ``Services``
(database, index, models, generator, task queue), routers, middleware and error handlers."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.errors import install_error_handlers
from api.middleware import RequestContextMiddleware
from api.routers import ALL_ROUTERS
from api.routers.portal import STATIC_DIR
from core import db as database
from core.dedupe import SeenEvents
from core.logging import configure_logging
from core.model_loading import force_offline
from core.ratelimit import Limiter, MemoryLimiter, RecentRefusals, RedisLimiter
from core.secrets import SecretBox
from core.settings import Settings, get_settings
from services.container import Services, build_services

log = logging.getLogger("ragkb.api")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The app for ``settings``; ``services`` (tests) replaces the ones it would build, and
    must be built from the same settings."""
    settings = services.settings if services is not None else settings or get_settings()
    force_offline()
    _prepare_storage(settings)
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ingest.documents import sweep_orphan_files_in_background
        from tasks.queue import TaskQueue, make_queue

        sweep_orphan_files_in_background(settings, app.state.db)
        services: Services = app.state.services

        def services_with(queue: TaskQueue) -> Services:
            services.task_queue = queue  # task bodies (in-process) submit follow-ups here
            return services

        app.state.task_queue = make_queue(settings, services_with)
        app.state.readiness_checks["ingest_queue"] = app.state.task_queue.health
        if settings.server.warm_up:
            # Load the embedding model and open the index now, not on the first request.
            threading.Thread(target=services.indexer.warm_up, daemon=True).start()
        metrics_server = _serve_metrics(settings.observability.metrics_bind)
        yield
        if metrics_server is not None:
            metrics_server.shutdown()
        app.state.task_queue.close()
        services.close()
        app.state.db.dispose()

    app = FastAPI(
        title="ragkb",
        version="0.1.0",
        summary="Enterprise RAG knowledge base: cited answers, strict tenant isolation.",
        lifespan=lifespan,
    )
    db = services.db
    app.state.settings = settings
    app.state.db = db
    app.state.services = services
    limiter = build_limiter(settings)
    app.state.limiter = limiter
    app.state.secret_box = SecretBox.from_settings(settings)
    app.state.seen_events = SeenEvents(settings.storage.redis_url)
    app.state.readiness_checks = {
        "database": lambda: _check_database(db),
        "rate_limiter": limiter.health,
        "generator": services.generator_health,
        "index": services.index_health,
    }

    install_error_handlers(app)
    app.state.refusals = RecentRefusals(settings.limits.rate_limit_refusal_memory_s)
    app.add_middleware(RequestContextMiddleware, refusals=app.state.refusals)
    for router in ALL_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _prepare_storage(settings: Settings) -> None:
    settings.ensure_dirs()
    if settings.should_auto_migrate:
        database.upgrade(settings.sqlalchemy_url)


def build_limiter(settings: Settings) -> Limiter:
    """Redis-backed when Redis is configured (shared by replicas), else in-process."""
    return (
        RedisLimiter(settings.storage.redis_url) if settings.storage.redis_url else MemoryLimiter()
    )


def _serve_metrics(bind: str | None) -> Any:
    """Serve the Prometheus metrics without a token on ``bind`` (HOST:PORT), an address a
    private network's scraper reaches and the public does not; the server, or None."""
    if not bind:
        return None
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
    log.info("metrics served on %s", bind)
    return server


def _check_database(db: database.Database) -> dict[str, Any]:
    db.ping()
    return {"dialect": db.engine.dialect.name}


def create_app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory api.app:create_app_from_env`."""
    settings = get_settings()
    configure_logging(settings.observability.log_level, settings.observability.log_json)
    return create_app(settings)
