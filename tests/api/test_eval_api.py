"""Per-tenant eval over the API: upload a question set, the run is queued in-process on the
tenant's own documents, GET shows it done with metrics, the HTML report has its plots;
another tenant gets 404; a bad question set is a 400 in the one error shape."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.support.helpers import TenantCredentials, assert_error, make_settings

DOCS = {
    "orion.md": "# Orion\n\nThe Orion merger closes on 14 March. The code word is PELICAN-7.\n",
    "holidays.md": "# Holidays\n\nStaff get 25 days of paid holiday a year, plus bank holidays.\n",
    "parking.md": "# Parking\n\nThe car park opens at 7 am; badges are issued at reception.\n",
}
QUESTIONS = (
    "question,expected_documents,answer\n"
    "When does the Orion merger close?,orion.md,14 March\n"
    "How many days of paid holiday do staff get?,holidays*,25 days\n"
    "When does the car park open?,parking.md,7 am\n"
)


def _upload(client: TestClient, tenant: TenantCredentials) -> None:
    files = [("files", (name, text.encode(), "text/markdown")) for name, text in DOCS.items()]
    r = client.post("/v1/documents", files=files, headers=tenant.headers)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while True:
        items = client.get("/v1/documents", headers=tenant.headers).json()["items"]
        if items and all(d["status"] == "ready" for d in items):
            return
        assert time.monotonic() < deadline, items
        time.sleep(0.3)


def _wait_done(client: TestClient, tenant: TenantCredentials, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        run: dict[str, Any] = client.get(f"/v1/eval/runs/{run_id}", headers=tenant.headers).json()
        if run["status"] in ("done", "failed"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.3)


def test_eval_run_lifecycle_on_the_tenants_documents(
    client: TestClient, tenant_a: TenantCredentials, tenant_b: TenantCredentials
) -> None:
    _upload(client, tenant_a)
    r = client.post(
        "/v1/eval/runs",
        files={"file": ("handbook.csv", QUESTIONS.encode(), "text/csv")},
        data={"modes": "bm25,hybrid+rerank", "answers": "true"},
        headers=tenant_a.headers,
    )
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "queued" and created["questions"] == 3
    assert created["dataset"] == "handbook"

    run = _wait_done(client, tenant_a, created["id"])
    assert run["status"] == "done", run["error"]
    assert run["progress"] == 100.0
    modes = run["results"]["modes"]
    assert modes["hybrid+rerank"]["ndcg@10"] > 0.9 and modes["bm25"]["recall@10"] == 1.0
    assert {"rank_bm25", "dense-exact"} <= set(modes)
    answers = run["results"]["answers"]
    assert answers["citation_precision"] > 0.5 and answers["refusal_rate"] < 0.5
    assert answers["token_f1"] > 0.0

    report = client.get(run["report_url"], headers=tenant_a.headers)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.text.count("data:image/png;base64,") == 4

    listed = client.get("/v1/eval/runs", headers=tenant_a.headers).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    # Tenant B sees nothing of it.
    assert client.get("/v1/eval/runs", headers=tenant_b.headers).json()["items"] == []
    assert_error(client.get(f"/v1/eval/runs/{created['id']}", headers=tenant_b.headers), 404)
    assert_error(client.get(run["report_url"], headers=tenant_b.headers), 404)

    # A second run of the same question set is compared with the first.
    r = client.post(
        "/v1/eval/runs",
        files={"file": ("handbook.csv", QUESTIONS.encode(), "text/csv")},
        data={"modes": "bm25", "answers": "false", "baselines": "false"},
        headers=tenant_a.headers,
    )
    second = _wait_done(client, tenant_a, r.json()["id"])
    assert second["results"]["comparison"]["previous_run"] == created["id"]
    assert second["results"]["comparison"]["regressions"] == []


def test_bad_question_sets_and_modes_are_refused(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    bad = client.post(
        "/v1/eval/runs",
        files={"file": ("q.jsonl", b'{"question": "ok"}\n{oops\n', "application/jsonl")},
        headers=tenant_a.headers,
    )
    assert "line 2" in assert_error(bad, 400, "invalid_question_set")["message"]
    r = client.post(
        "/v1/eval/runs",
        files={"file": ("q.csv", b"question\nWhat?\n", "text/csv")},
        data={"modes": "bm25,telepathy"},
        headers=tenant_a.headers,
    )
    assert_error(r, 400, "invalid_mode")
    assert_error(client.post("/v1/eval/runs", headers=tenant_a.headers), 422)


def test_celery_mode_sends_the_eval_task_to_the_light_queue(tmp_path: Path) -> None:
    """The worker's Celery app loads ``eval.tasks``; the API side puts ``ragkb.eval.run`` on
    the light queue (checked on the local Redis broker, in a queue of this test's own)."""
    import redis

    from services.worker import make_worker_app
    from tasks.names import TaskName
    from tasks.queue import CeleryQueue

    queue_name = f"test-eval-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        tmp_path,
        tasks={"mode": "celery", "celery_light_queue": queue_name},
        storage={"redis_url": "redis://127.0.0.1:6379/0"},
    )
    app = make_worker_app(settings)
    assert TaskName.EVAL_RUN in app.tasks
    queue = CeleryQueue(settings)
    broker = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        queue.submit(TaskName.EVAL_RUN, "run-123")
        raw = broker.lpop(queue_name)
        assert isinstance(raw, bytes)
        message = json.loads(raw)
        assert message["headers"]["task"] == TaskName.EVAL_RUN
        assert message["headers"]["argsrepr"] == "['run-123']"
    finally:
        broker.delete(queue_name)
        queue.close()
        app.close()
