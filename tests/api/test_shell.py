"""The API shell: health, readiness, request ids, the one error shape for every kind of
error, and JSON access logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.logging import JsonFormatter
from tests.support.helpers import (
    ADMIN_KEY,
    TenantCredentials,
    assert_error,
    make_app,
    make_settings,
)


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["ok"] is True


def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
    )
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    error = assert_error(r, 503, "service_unavailable")
    assert "database" in error["message"]
    assert r.json()["checks"]["database"]["ok"] is False


def test_every_response_has_a_request_id_and_echoes_a_safe_one(client: TestClient) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    # Anything that could inject into logs is replaced, not echoed.
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id\tinjected"})
    assert replaced.headers["x-request-id"] != "bad id\tinjected"


def test_unknown_route_and_wrong_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.delete("/healthz"), 405, "method_not_allowed")


def test_malformed_json_and_invalid_fields_are_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    r = client.post(
        "/v1/admin/tenants",
        content=b'{"slug": ',
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert_error(r, 422, "validation_error")
    r = client.post("/v1/admin/tenants", json={"slug": 42, "extra": 1}, headers=admin_headers)
    error = assert_error(r, 422, "validation_error")
    assert "slug" in error["message"]


def test_unhandled_exception_is_a_500_in_the_error_shape(app: FastAPI) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    error = assert_error(r, 500, "internal_error")
    assert "secret internals" not in r.text
    assert error["message"] == "internal server error"


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/admin/tenants" in spec["paths"]


def test_access_log_is_a_json_line_with_request_context(
    client: TestClient, tenant_a: TenantCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ragkb.access"):
        r = client.get("/v1/me", headers=tenant_a.headers)
    assert r.status_code == 200
    records = [rec for rec in caplog.records if rec.name == "ragkb.access"]
    assert records, "no access log line"
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == r.headers["x-request-id"]
    assert line["tenant"] == "tenant-a"
    assert line["route"] == "/v1/me"
    assert line["status"] == 200
    assert isinstance(line["latency_ms"], float)
    assert tenant_a.key not in json.dumps(line)
