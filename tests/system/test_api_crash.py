"""The API process (a real ``ragkb serve``) is killed with SIGKILL in the middle of an
upload: no document row is left without its file, and the next start deletes what the
crash left in the tenant's folder (the temporary upload file, or a stored file whose row
was never committed); uploads work again afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from core.db import Database
from core.models import Document
from core.settings import Settings
from tests.support.helpers import ADMIN_KEY, REPO_ROOT, TenantCredentials
from tests.support.live_server import free_port

BIG_BYTES = 120 * 1024 * 1024
LINE = b"Inventory count for aisle seven: pallets of copier paper, toner and staples.\n"


class ApiProcess:
    def __init__(self, settings: Settings, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAGKB_")}
        base.update(
            RAGKB_DATA_DIR=str(settings.storage.data_dir),
            RAGKB_ADMIN_KEY=ADMIN_KEY,
            RAGKB_WARM_UP="false",
            RAGKB_LOG_JSON="false",
            RAGKB_MAX_UPLOAD_BYTES=str(2 * BIG_BYTES),
            HF_HUB_OFFLINE="1",
            DO_NOT_TRACK="1",
            SCARF_NO_ANALYTICS="1",
            **env,
        )
        log = (settings.storage.data_dir.parent / f"api-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import app; app()", "serve",
             "--port", str(self.port)],
            cwd=REPO_ROOT, env=base, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("the API did not start")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def apis(settings: Settings) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(**env: str) -> ApiProcess:
        started.append(ApiProcess(settings, **env))
        return started[-1]

    yield start
    for api in started:
        api.kill()


def _rows(settings: Settings) -> list[Document]:
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            return list(session.query(Document))
    finally:
        db.dispose()


def test_api_killed_during_an_upload_leaves_nothing_behind_after_restart(
    settings: Settings,
    tenant_a: TenantCredentials,
    apis: Callable[..., ApiProcess],
    tmp_path: Path,
) -> None:
    big = tmp_path / "inventory.txt"
    with big.open("wb") as out:
        for _ in range(BIG_BYTES // len(LINE)):
            out.write(LINE)
    api = apis()
    folder = settings.files_dir / tenant_a.scope.tenant_id
    seen: list[str] = []
    stop = threading.Event()

    def kill_when_spooling() -> None:
        # Killed while the upload is being copied into the tenant's folder: the worst time.
        while not stop.is_set():
            if folder.is_dir() and any(folder.glob(".upload-*")):
                seen.append("spooling")
                api.kill()
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=kill_when_spooling, daemon=True)
    watcher.start()
    with big.open("rb") as handle, pytest.raises(httpx.HTTPError):
        httpx.post(
            f"{api.url}/v1/documents",
            headers=tenant_a.headers,
            files=[("files", ("inventory.txt", handle, "text/plain"))],
            timeout=120,
        )
    stop.set()
    watcher.join(timeout=5)
    assert seen == ["spooling"], "the upload finished before the API could be killed"
    # The process died mid-way: a temporary file, but no row (it comes only with the file).
    assert list(folder.glob(".upload-*"))
    assert _rows(settings) == []
    # And a stored file whose row was never committed (a crash between the two).
    orphan = b"stored, then the process died before its row was committed"
    digest = hashlib.sha256(orphan).hexdigest()
    (folder / digest[:2]).mkdir(parents=True, exist_ok=True)
    (folder / digest[:2] / digest).write_bytes(orphan)

    api = apis(RAGKB_UPLOAD_ORPHAN_AFTER_S="0")
    deadline = time.monotonic() + 20
    while any(p.is_file() for p in folder.rglob("*")):
        assert time.monotonic() < deadline, sorted(folder.rglob("*"))
        time.sleep(0.1)

    small = httpx.post(
        f"{api.url}/v1/documents",
        headers=tenant_a.headers,
        files=[("files", ("after.txt", LINE * 20, "text/plain"))],
        timeout=60,
    )
    assert small.status_code == 202, small.text
    doc_id = small.json()["documents"][0]["id"]
    deadline = time.monotonic() + 60
    url = f"{api.url}/v1/documents/{doc_id}"
    while (status := httpx.get(url, headers=tenant_a.headers, timeout=10).json()["status"]) not in (
        "ready",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status == "ready"
    # Exactly the one document's file is stored, nothing else.
    rows = _rows(settings)
    assert [r.id for r in rows] == [doc_id]
    stored = [p for p in folder.rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [rows[0].sha256]
