"""Request context: a request id on every response, an access log line per request, and
the last line of defence that turns an unhandled exception into the one error shape.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, ragkb_error_response
from core.errors import RateLimited
from core.logging import request_id_var, tenant_var
from core.metrics import HTTP_LATENCY, HTTP_REQUESTS
from core.ratelimit import RecentRefusals

log = logging.getLogger("ragkb.access")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, refusals: RecentRefusals | None = None) -> None:
        self.app = app
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        rid_token = request_id_var.set(request_id)
        tenant_token = tenant_var.set(None)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            refused = self._recently_refused(scope)
            if refused is not None:
                retry_after, message = refused
                refusal = ragkb_error_response(RateLimited(message, retry_after=retry_after))
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if not status_holder["started"]:
                internal = error_response(500, "internal server error", "internal_error")
                await internal(scope, receive, send_with_id)
        finally:
            self._log_access(scope, request_id, status_holder["status"], started)
            request_id_var.reset(rid_token)
            tenant_var.reset(tenant_token)

    def _recently_refused(self, scope: Scope) -> tuple[float, str] | None:
        """A key refused for its rate moments ago is refused again here, before routing,
        authentication or the limiter (``core.ratelimit.RecentRefusals``): on the tenant
        API only, the routes that are rate limited (admin routes answer a tenant key 403)."""
        if self.refusals is None:
            return None
        path = scope.get("path", "")
        if not path.startswith("/v1/") or path.startswith("/v1/admin/"):
            return None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credential:
                    return self.refusals.check(credential)
                return None
        return None

    @staticmethod
    def _log_access(scope: Scope, request_id: str, status: Any, started: float) -> None:
        route = scope.get("route")
        state = scope.get("state", {})
        elapsed = time.perf_counter() - started
        # The route template, never the raw path: ids in paths would explode the label set.
        route_label = getattr(route, "path", "unmatched")
        method = scope.get("method", "")
        HTTP_REQUESTS.labels(method, route_label, str(status)).inc()
        HTTP_LATENCY.labels(method, route_label).observe(elapsed)
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": scope.get("method"),
                "route": getattr(route, "path", scope.get("path")),
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                "tenant": state.get("tenant"),
            },
        )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SAFE_REQUEST_ID.match(candidate) else None
    return None
