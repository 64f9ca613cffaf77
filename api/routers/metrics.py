"""Prometheus scrape endpoint: ``Authorization: Bearer $RAGKB_METRICS_TOKEN`` (or the admin
key). The counters show every tenant's activity (uploads, questions), so they are never
public; ``RAGKB_METRICS_BIND`` also serves them on an address of their own (see
``api.app``), for a scraper on a private network."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.deps import require_metrics_access
from core.metrics import render_latest

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (metrics token or admin key)",
    response_class=Response,
    dependencies=[Depends(require_metrics_access)],
)
def metrics() -> Response:
    body, content_type = render_latest()
    return Response(content=body, media_type=content_type)
