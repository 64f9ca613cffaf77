"""Error types raised by every layer and turned into the one HTTP error shape by the API.

Each error carries a stable machine-readable ``code`` and the HTTP status it maps to,
so that ingest/retrieval/generation never import HTTP code but still decide the status.
"""

from __future__ import annotations

import re

# An absolute path (POSIX or Windows) of two or more segments, as libraries put them in
# their messages: "cannot identify image file '/srv/ragkb-data/files/<tenant>/ab/...'".
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/\\])(?:[A-Za-z]:)?[/\\](?:[^\s'\"<>|:,;()\[\]{}/\\]+[/\\])+[^\s'\"<>|:,;()\[\]{}]*"
)


def without_paths(text: str) -> str:
    """``text`` with every absolute filesystem path replaced by ``<file>``: a message a
    tenant reads (a document's error, a failed run) never shows where the server keeps
    things. The last line of defence; messages are written without paths to begin with."""
    return _ABSOLUTE_PATH.sub("<file>", text)


class RagkbError(Exception):
    """Base error: ``code`` is stable for clients, ``message`` is for humans."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(RagkbError):
    status_code = 400
    code = "bad_request"


class Unauthorized(RagkbError):
    status_code = 401
    code = "unauthorized"


class Forbidden(RagkbError):
    status_code = 403
    code = "forbidden"


class NotFound(RagkbError):
    status_code = 404
    code = "not_found"


class Conflict(RagkbError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(RagkbError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(RagkbError):
    status_code = 415
    code = "unsupported_media_type"


class RateLimited(RagkbError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ServiceUnavailable(RagkbError):
    status_code = 503
    code = "service_unavailable"
