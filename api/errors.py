"""The one error shape: ``{"error": {"code", "message", "request_id"}}``.

Every failure — our own errors, HTTP errors, validation errors, and unhandled
exceptions (rendered by the request-context middleware) — is answered in this shape.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import RagkbError, RateLimited
from core.logging import request_id_var

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(status: int, message: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": {
            "code": code or _STATUS_CODES.get(status, HTTPStatus(status).phrase.lower()),
            "message": message,
            "request_id": request_id_var.get(),
        }
    }
    body.update(extra)
    return body


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, **extra), status, headers=headers)


def _ragkb_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagkbError)
    return ragkb_error_response(exc)


def ragkb_error_response(exc: RagkbError) -> JSONResponse:
    """The response for one of our errors (429s with ``Retry-After``)."""
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return error_response(exc.status_code, exc.message, exc.code, headers=headers)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, message, headers=dict(exc.headers or {}))


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{location}: {err.get('msg', 'invalid')}")
    message = "invalid request: " + "; ".join(problems) if problems else "invalid request"
    # Pydantic's error list (without the offending input, which may be large or secret).
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    return error_response(422, message, "validation_error", details=details)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagkbError, _ragkb_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    _document_errors(app)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable, e.g. `not_found`.")
    message: str = Field(description="For humans: what went wrong and what to do.")
    request_id: str = Field(description="The same as the `X-Request-ID` response header.")


class ErrorResponse(BaseModel):
    """Every error: 4xx and 5xx. Some carry more (422: ``details``; 503 on /v1/query: the
    retrieved ``sources``; /readyz: ``checks``)."""

    error: ErrorDetail
    details: list[dict[str, Any]] | None = Field(
        default=None, description="422 only: each invalid field (`loc`, `msg`)."
    )


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def _document_errors(app: FastAPI) -> None:
    """Declare the one error shape in the OpenAPI spec, for every operation (``4XX`` and
    ``5XX``), in place of FastAPI's default 422 body (``detail``), which this API never
    sends. Clients and the schema fuzzer (tests/api/test_fuzz.py) then check errors too."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorResponse" in components:
            return schema
        for name, definition in (
            ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
            .pop("$defs", {})
            .items()
        ):
            components[name] = definition
        components["ErrorResponse"] = ErrorResponse.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components["ErrorResponse"].pop("$defs", None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, response in list(responses.items()):
                    if status.startswith(("4", "5")):
                        response["content"] = {"application/json": {"schema": _ERROR_REF}}
                for status, phrase in (("4XX", "Client error"), ("5XX", "Server error")):
                    responses.setdefault(
                        status,
                        {
                            "description": f"{phrase}, in the one error shape",
                            "content": {"application/json": {"schema": _ERROR_REF}},
                        },
                    )
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
