"""Fair ingestion (issue #20): tenant B's one-page file while tenant A ingests a large text
file, on the in-process queue with the default settings (throw-away data dir, SQLite,
embedded index; the app in this process through Starlette's TestClient).

    .venv/bin/python bench/fair_ingestion.py --a-mib 100      # over the text limit
    .venv/bin/python bench/fair_ingestion.py --a-mib 10       # within it: A is ingested

Prints A's outcome and time, B's time to ready, and this process's peak RSS (sampled every
0.1 s) while both were in flight.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from core import db as database
from core import tenants
from core.models import KeyRole
from core.settings import Settings

SENTENCE = "The warehouse audit found the loading docks and the cold store in good order. "


def _key(settings: Settings, slug: str) -> dict[str, str]:
    db = database.Database.from_settings(settings)
    with db.session() as session:
        tenant = tenants.create_tenant(session, slug)
        issued = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant)
    db.dispose()
    return {"Authorization": f"Bearer {issued.plaintext}"}


def _wait(client: TestClient, headers: dict[str, str], doc_id: str, limit_s: float) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        doc = client.get(f"/v1/documents/{doc_id}", headers=headers).json()
        if doc["status"] in ("ready", "failed"):
            return doc
        time.sleep(0.1)
    return client.get(f"/v1/documents/{doc_id}", headers=headers).json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a-mib", type=float, default=100.0, help="Size of A's text file.")
    parser.add_argument(
        "--a-limit-s", type=float, default=1800.0, help="Stop waiting for A after this long."
    )
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="ragkb-fair-"))
    settings = Settings(
        _env_file=None,
        storage={"data_dir": data_dir},
        security={"admin_key": SecretStr("bench-admin")},
        server={"auto_migrate": True, "warm_up": False},
    )
    app = create_app(settings)
    a, b = _key(settings, "tenant-a"), _key(settings, "tenant-b")
    big = data_dir / "big.txt"
    with big.open("w") as out:
        line = SENTENCE * 12 + "\n"
        for _ in range(int(args.a_mib * (1 << 20)) // len(line)):
            out.write(line)
    process = psutil.Process(os.getpid())
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], process.memory_info().rss)

    with TestClient(app) as client:
        # Load the embedding model first: the figure is the wait, not the model's loading.
        warm = {"files": ("warm.txt", SENTENCE.encode(), "text/plain")}
        doc = client.post("/v1/documents", files=warm, headers=b).json()["documents"][0]
        _wait(client, b, doc["id"], 120)
        baseline = process.memory_info().rss
        threading.Thread(target=sample, daemon=True).start()
        started = time.monotonic()
        with big.open("rb") as handle:
            files = {"files": ("big.txt", handle, "text/plain")}
            a_doc = client.post("/v1/documents", files=files, headers=a).json()["documents"][0]
        a_uploaded = time.monotonic() - started
        small = {"files": ("one-page.txt", (SENTENCE * 40).encode(), "text/plain")}
        b_started = time.monotonic()
        b_doc = client.post("/v1/documents", files=small, headers=b).json()["documents"][0]
        b_final = _wait(client, b, b_doc["id"], 600)
        b_ready = time.monotonic() - b_started
        a_state = client.get(f"/v1/documents/{a_doc['id']}", headers=a).json()
        print(f"A: {args.a_mib:g} MiB text, upload {a_uploaded:.1f} s", flush=True)
        print(
            f"B: one page {b_final['status']} after {b_ready:.1f} s "
            f"(A then: {a_state['status']}, {a_state['progress']:.0f}%)",
            flush=True,
        )
        a_final = _wait(client, a, a_doc["id"], args.a_limit_s)
        a_took = time.monotonic() - started
        done.set()
        print(f"A: {a_final['status']} after {a_took:.1f} s: {a_final['error'] or ''}")
        print(
            f"RSS: {baseline / (1 << 20):,.0f} MiB before, peak {peak[0] / (1 << 20):,.0f} MiB "
            f"({os.cpu_count()} cores)",
            flush=True,
        )
        if a_final["status"] not in ("ready", "failed"):
            os._exit(0)  # do not wait for A's document on the way out


if __name__ == "__main__":
    main()
