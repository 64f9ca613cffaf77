"""Liveness and readiness.

``/readyz`` runs every check registered in ``app.state.readiness_checks`` (the database
here; the index, queue and generator register theirs) and answers 503 in the error shape
when one fails. Anyone may ask whether the service is ready, and learns only that: each
check's result (paths, counts, the queue's depth, error texts) is for the admin key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import admin_if_authenticated
from api.errors import error_body

router = APIRouter(tags=["health"])

ReadinessCheck = Callable[[], dict[str, Any]]


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Dependencies are reachable (each check's details with the admin key)",
    response_model=None,
)
def readyz(
    request: Request, admin: Annotated[bool, Depends(admin_if_authenticated)]
) -> dict[str, Any] | JSONResponse:
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            results[name] = {"ok": True, **check()}
        except Exception as exc:  # a failing dependency is the answer, not an error
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    failed = [name for name, result in results.items() if not result["ok"]]
    if not admin:
        if failed:
            return JSONResponse(error_body(503, "not ready"), status_code=503)
        return {"status": "ready"}
    if failed:
        message = "not ready: " + ", ".join(failed)
        return JSONResponse(error_body(503, message, checks=results), status_code=503)
    return {"status": "ready", "checks": results}
