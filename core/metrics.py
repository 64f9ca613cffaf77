"""Prometheus metrics, defined once for the whole process.

Every layer records into these (ingest stages, retrieval and generation stages, the
generator client); the API exposes them at ``/metrics``. The tenant is a label only on
the few metrics where it is allowed (``Settings.metrics_tenant_label``): tenants can be
many, and unbounded label sets would exhaust Prometheus. With several processes (uvicorn
workers, Celery), set ``PROMETHEUS_MULTIPROC_DIR`` and the endpoint aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Query stages take milliseconds to seconds; ingestion stages seconds to many minutes.
_QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_INGEST_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

HTTP_REQUESTS = Counter(
    "ragkb_http_requests_total",
    "HTTP requests by route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "ragkb_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    buckets=_QUERY_BUCKETS,
)
QUERY_STAGE_LATENCY = Histogram(
    "ragkb_query_stage_duration_seconds",
    "Question answering latency per stage: retrieve, rerank, generate, end_to_end.",
    ["stage", "tenant"],
    buckets=_QUERY_BUCKETS,
)
INGEST_STAGE_LATENCY = Histogram(
    "ragkb_ingest_stage_duration_seconds",
    "Ingestion latency per stage (parse, chunk, ...).",
    ["stage"],
    buckets=_INGEST_BUCKETS,
)
INGEST_FAILURES = Counter(
    "ragkb_ingest_failures_total",
    "Documents that failed, by the stage they failed in.",
    ["stage"],
)
QUEUE_DEPTH = Gauge(
    "ragkb_queue_depth", "Tasks waiting in a queue.", ["queue"], multiprocess_mode="max"
)
GENERATOR_TOKENS = Counter(
    "ragkb_generator_tokens_total", "Tokens sent to and received from the generator.", ["kind"]
)
GENERATOR_ERRORS = Counter(
    "ragkb_generator_errors_total", "Generator call failures by kind.", ["kind"]
)
GENERATOR_CIRCUIT_OPEN = Gauge(
    "ragkb_generator_circuit_open",
    "1 while the generator's circuit breaker is open.",
    multiprocess_mode="max",
)

NO_TENANT = "-"


def tenant_label(tenant_slug: str | None, enabled: bool) -> str:
    """The tenant label value: the slug where allowed, else one shared placeholder."""
    return tenant_slug if enabled and tenant_slug else NO_TENANT


def render_latest() -> tuple[bytes, str]:
    """The exposition text for /metrics (aggregated over processes when multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
