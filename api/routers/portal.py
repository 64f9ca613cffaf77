"""The upload portal: one static page (HTML, CSS, a little JavaScript, no build step)
served at ``/``. It talks to the same JSON API as every other client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# The page loads only its own script and styles; nothing may frame it.
PORTAL_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "frame-src blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["portal"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def portal() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "portal.html").read_text("utf-8"), headers=PORTAL_HEADERS)
