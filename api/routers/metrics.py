"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response

from core.metrics import render_latest

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    body, content_type = render_latest()
    return Response(content=body, media_type=content_type)
