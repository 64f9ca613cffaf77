"""The Slack bot against a local recorder of Slack's Web API: signatures (good, bad, stale),
url_verification, answers in the thread with citations, /ask, retries answered once, and
two workspaces that never receive each other's tenant's answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.settings import Settings
from tests.support.helpers import TenantCredentials, assert_error, make_app
from tests.support.indexed_docs import index_document
from tests.support.slack_recorder import SlackRecorder, slack_recorder

SECRET_A = "signing-secret-a-0123456789"
SECRET_B = "signing-secret-b-9876543210"


def signed(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    base = f"v0:{ts}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def event_body(team: str, text: str, event_id: str, **event: Any) -> bytes:
    payload = {
        "type": "event_callback",
        "team_id": team,
        "event_id": event_id,
        "event": {
            "type": "app_mention",
            "user": "U1",
            "text": f"<@UBOT> {text}",
            "channel": "C1",
            "ts": "1700000000.000001",
            **event,
        },
    }
    return json.dumps(payload).encode()


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with slack_recorder() as rec:
        yield rec


@pytest.fixture
def slack_client(
    settings: Settings,
    recorder: SlackRecorder,
    admin_headers: dict[str, str],
    tenant_a: TenantCredentials,
    tenant_b: TenantCredentials,
) -> Iterator[TestClient]:
    configured = settings.with_changes(chat={"slack_api_base_url": recorder.base_url})
    app = make_app(configured)
    services = app.state.services
    with services.db.session() as session:
        index_document(
            services.indexer,
            session,
            tenant_a.scope,
            ["The Apollo project budget for 2026 is 4.2 million euros, approved in March."],
            filename="apollo-budget.pdf",
        )
        index_document(
            services.indexer,
            session,
            tenant_b.scope,
            ["The Zephyr cafeteria opens at 7:30 and serves vegan lunch on Fridays."],
            filename="zephyr-cafeteria.txt",
        )
    with TestClient(app, raise_server_exceptions=False) as client:
        for team, tenant, secret in (("TA1", "tenant-a", SECRET_A), ("TB2", "tenant-b", SECRET_B)):
            r = client.post(
                f"/v1/admin/tenants/{tenant}/slack",
                json={"team_id": team, "bot_token": f"xoxb-{team}", "signing_secret": secret},
                headers=admin_headers,
            )
            assert r.status_code == 201, r.text
            assert secret not in r.text and "xoxb" not in r.text
        yield client


def post_event(client: TestClient, body: bytes, secret: str, **headers: str) -> Any:
    return client.post(
        "/slack/events",
        content=body,
        headers={"Content-Type": "application/json", **signed(body, secret), **headers},
    )


def test_url_verification_echoes_the_challenge(slack_client: TestClient) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123"}).encode()
    r = post_event(slack_client, body, SECRET_B)
    assert r.status_code == 200 and r.json() == {"challenge": "abc123"}


def test_bad_stale_or_missing_signatures_are_refused(slack_client: TestClient) -> None:
    body = event_body("TA1", "budget?", "Ev1")
    assert_error(post_event(slack_client, body, "wrong-secret"), 401, "invalid_signature")
    # Signed by the other workspace's secret: refused too.
    assert_error(post_event(slack_client, body, SECRET_B), 401, "invalid_signature")
    stale = signed(body, SECRET_A, timestamp=int(time.time()) - 6 * 60)
    r = slack_client.post("/slack/events", content=body, headers=stale)
    assert_error(r, 401, "invalid_signature")
    assert_error(slack_client.post("/slack/events", content=body), 401, "invalid_signature")
    unknown = event_body("TZZZ", "budget?", "Ev2")
    assert_error(post_event(slack_client, unknown, SECRET_A), 401, "invalid_signature")
    malformed = b"{not json"
    assert_error(post_event(slack_client, malformed, SECRET_A), 400, "malformed_json")


def test_mention_is_answered_in_the_thread_with_citations(
    slack_client: TestClient, recorder: SlackRecorder
) -> None:
    body = event_body("TA1", "What is the Apollo project budget for 2026?", "Ev10")
    started = time.monotonic()
    r = post_event(slack_client, body, SECRET_A)
    assert r.status_code == 200
    assert time.monotonic() - started < 3.0 or recorder.messages()  # acknowledged promptly
    assert recorder.posted.wait(30)
    (message,) = recorder.messages()
    assert message["channel"] == "C1"
    assert message["thread_ts"] == "1700000000.000001"
    assert "4.2 million" in message["text"]
    assert "[1] apollo-budget.pdf" in message["text"]
    blocks = json.dumps(message["blocks"])
    assert "#document=" in blocks
    # The first statement, which carries the answer, stands out.
    lead = message["blocks"][0]["text"]["text"]
    assert lead.startswith("*") and "4.2 million" in lead.split("*")[1]
    (_, _, auth) = recorder.calls[0]
    assert auth == "Bearer xoxb-TA1"


def test_slack_retries_do_not_answer_twice(
    slack_client: TestClient, recorder: SlackRecorder
) -> None:
    body = event_body("TA1", "What is the Apollo budget?", "Ev20")
    assert post_event(slack_client, body, SECRET_A).status_code == 200
    retry = post_event(slack_client, body, SECRET_A, **{"X-Slack-Retry-Num": "1"})
    assert retry.status_code == 200
    # The same event id delivered again without the retry header: still answered once.
    assert post_event(slack_client, body, SECRET_A).status_code == 200
    assert recorder.posted.wait(30)
    time.sleep(0.5)
    assert len(recorder.messages()) == 1


def test_each_workspace_gets_only_its_own_tenants_answers(
    slack_client: TestClient, recorder: SlackRecorder
) -> None:
    body = event_body("TB2", "What is the Apollo project budget for 2026?", "Ev30")
    assert post_event(slack_client, body, SECRET_B).status_code == 200
    assert recorder.posted.wait(30)
    (message,) = recorder.messages()
    assert "4.2 million" not in message["text"]
    assert "apollo" not in message["text"].lower() or "does not contain" in message["text"]
    assert recorder.calls[0][2] == "Bearer xoxb-TB2"


def test_slash_command_acknowledges_then_answers_in_channel(
    slack_client: TestClient, recorder: SlackRecorder
) -> None:
    form = urlencode(
        {
            "command": "/ask",
            "text": "When does the cafeteria open?",
            "team_id": "TB2",
            "channel_id": "C9",
            "user_id": "U9",
        }
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(form, SECRET_B)}
    r = slack_client.post("/slack/commands", content=form, headers=headers)
    assert r.status_code == 200
    assert r.json()["response_type"] == "ephemeral"
    assert recorder.posted.wait(30)
    (message,) = recorder.messages()
    assert message["channel"] == "C9"
    assert "7:30" in message["text"]


def test_secrets_are_stored_encrypted(slack_client: TestClient, settings: Settings) -> None:
    from core.models import ChatIntegration

    db = Database.from_settings(settings)
    with db.session() as session:
        rows = session.query(ChatIntegration).all()
        assert len(rows) == 2
        for row in rows:
            assert "xoxb" not in row.bot_token_encrypted
            assert SECRET_A not in row.signing_secret_encrypted
    db.dispose()


def _wait_messages(recorder: SlackRecorder, count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(recorder.messages()) < count:
        assert time.monotonic() < deadline, recorder.messages()
        time.sleep(0.05)
    return recorder.messages()


def test_chat_questions_count_against_the_tenants_rate_and_daily_quota(
    slack_client: TestClient, recorder: SlackRecorder, admin_headers: dict[str, str]
) -> None:
    """Slack questions have no API key, yet the tenant's bucket and daily quota apply."""
    limits = {"rate_limit_tenant_burst": 2, "rate_limit_tenant_rps": 0.001}
    r = slack_client.patch("/v1/admin/tenants/tenant-a/limits", json=limits, headers=admin_headers)
    assert r.status_code == 200, r.text
    for n in range(3):
        body = event_body("TA1", "What is the Apollo project budget?", f"EvRate{n}")
        assert post_event(slack_client, body, SECRET_A).status_code == 200
        _wait_messages(recorder, n + 1)
    texts = [m["text"] for m in recorder.messages()]
    assert ["4.2 million" in t for t in texts] == [True, True, False], texts
    assert "too many requests for this tenant" in texts[2]

    # The daily quota: tenant B may ask once a day (its bucket is untouched).
    quota = {"max_queries_per_day": 1}
    r = slack_client.patch("/v1/admin/tenants/tenant-b/limits", json=quota, headers=admin_headers)
    assert r.status_code == 200, r.text
    for n in range(2):
        body = event_body("TB2", "When does the cafeteria open?", f"EvQuota{n}")
        assert post_event(slack_client, body, SECRET_B).status_code == 200
        _wait_messages(recorder, 4 + n)
    first, second = (m["text"] for m in recorder.messages()[3:])
    assert "7:30" in first
    assert "daily question quota reached" in second and "7:30" not in second


@pytest.mark.parametrize("timestamp", ["", "abc", "1e9", "-1", "17000000000000000000000"])
def test_a_malformed_timestamp_is_the_same_401_for_known_and_unknown_teams(
    slack_client: TestClient, timestamp: str
) -> None:
    """A non-numeric or empty timestamp used to be a 500 for a configured workspace and a
    401 for an unknown one: probing told which workspaces are set up (#20)."""
    answers = []
    for team in ("TA1", "TZZZ"):
        body = event_body(team, "budget?", f"EvTs-{team}")
        headers = {**signed(body, SECRET_A), "X-Slack-Request-Timestamp": timestamp}
        for path in ("/slack/events", "/slack/commands"):
            r = slack_client.post(path, content=body, headers=headers)
            answers.append(assert_error(r, 401, "invalid_signature")["message"])
    assert len(set(answers)) == 1


def test_a_replayed_request_is_answered_once(
    slack_client: TestClient, recorder: SlackRecorder
) -> None:
    """An event without an event id, and a slash command, replayed as captured within the
    5-minute window: one answer each (#20)."""
    payload = json.loads(event_body("TA1", "What is the Apollo budget?", "x"))
    del payload["event_id"]
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **signed(body, SECRET_A)}
    for _ in range(3):
        assert slack_client.post("/slack/events", content=body, headers=headers).status_code == 200
    form = urlencode({"text": "When does the cafeteria open?", "team_id": "TB2"}).encode()
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(form, SECRET_B)}
    replies = [
        slack_client.post("/slack/commands", content=form, headers=form_headers) for _ in range(3)
    ]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert "Thinking about" in replies[0].json()["text"]
    assert all("answered already" in r.json()["text"] for r in replies[1:])
    _wait_messages(recorder, 2)
    time.sleep(1.0)
    texts = [m["text"] for m in recorder.messages()]
    assert len(texts) == 2, texts
