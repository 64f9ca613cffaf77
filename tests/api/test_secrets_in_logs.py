"""Secrets never reach logs or error messages: API keys (valid, wrong, revoked), the admin
key, Slack bot tokens and signing secrets, the LLM API key. CORS is closed by default."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from tests.support.helpers import ADMIN_KEY, TenantCredentials, make_app


def test_no_secret_in_logs_or_errors(
    settings: Settings,
    admin_headers: dict[str, str],
    tenant_a: TenantCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm_key = "sk-llm-secret-0123456789"
    configured = settings.with_changes(
        llm={
            "api_key": SecretStr(llm_key),
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "retries": 0,
            "deadline_s": 2.0,
        }
    )
    bot_token, signing_secret = "xoxb-bot-token-secret", "slack-signing-secret-xyz"
    wrong_key = tenant_a.key[:-6] + "ZZZZZZ"
    with (
        caplog.at_level(logging.DEBUG),
        TestClient(make_app(configured), raise_server_exceptions=False) as client,
    ):
        bodies = [
            client.get("/v1/me", headers=tenant_a.headers).text,
            client.get("/v1/me", headers={"Authorization": f"Bearer {wrong_key}"}).text,
            client.post(
                f"/v1/admin/tenants/{tenant_a.scope.slug}/slack",
                json={
                    "team_id": "TSECRET1",
                    "bot_token": bot_token,
                    "signing_secret": signing_secret,
                },
                headers=admin_headers,
            ).text,
            client.post(
                "/v1/query", json={"question": "anything about budgets?"}, headers=tenant_a.headers
            ).text,
            client.get("/readyz").text,
            client.delete(f"/v1/admin/keys/{tenant_a.key_id}", headers=admin_headers).text,
            client.get("/v1/me", headers=tenant_a.headers).text,
        ]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    for secret in (tenant_a.key, wrong_key, ADMIN_KEY, bot_token, signing_secret, llm_key):
        assert secret not in logged, "a secret reached the logs"
        assert all(secret not in body for body in bodies), "a secret reached a response"


def test_cors_is_closed_by_default(client: TestClient) -> None:
    r = client.options(
        "/v1/query",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
