"""Metadata on the command line: ``ragkb ingest --meta``, ``ragkb set-meta`` and the
``--filter`` of ``ragkb search`` and ``ragkb ask``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings

FILTER_KEYS = "organisation, period, document_type, title or meta.<key>"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path / "kb"))
    monkeypatch.delenv("RAGKB_DATABASE_URL", raising=False)
    monkeypatch.delenv("RAGKB_LLM_BASE_URL", raising=False)
    monkeypatch.setenv("RAGKB_TASK_MODE", "inprocess")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def search(cli: CliRunner, *args: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(run(cli, "search", *args, "--tenant", "acme", "--json"))
    return body


def test_ingest_meta_set_meta_and_filters(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "contracts.md").write_text(
        "# Contracts\n\nEvery supplier contract is reviewed by counsel before signature.\n"
    )
    (tmp_path / "onboarding.md").write_text(
        "# Onboarding\n\nEvery new employee receives a laptop and a contract on day one.\n"
    )
    run(cli, "init")
    run(cli, "tenants", "create", "acme")
    out = run(
        cli,
        "ingest",
        str(tmp_path / "contracts.md"),
        "--tenant",
        "acme",
        "--meta",
        "department=legal",
        "--meta",
        "organisation=Acme Corp",
    )
    assert "1 ready" in out
    run(
        cli,
        "ingest",
        str(tmp_path / "onboarding.md"),
        "--tenant",
        "acme",
        "--meta",
        "department=hr",
    )
    bad = run(
        cli,
        "ingest",
        str(tmp_path / "onboarding.md"),
        "--tenant",
        "acme",
        "--meta",
        "department",
        code=2,
    )
    assert "write it as key=value" in bad

    query = "who reviews a contract"
    everything = search(cli, query)
    by_name = {h["filename"]: h["document_id"] for h in everything["hits"]}
    assert set(by_name) == {"contracts.md", "onboarding.md"}
    legal = search(cli, query, "--filter", "meta.department=legal")
    assert {h["filename"] for h in legal["hits"]} == {"contracts.md"}
    assert legal["documents"] == "filtered: 1 document(s)"
    either = search(
        cli, query, "--filter", "meta.department=legal", "--filter", "meta.department=hr"
    )
    assert {h["filename"] for h in either["hits"]} == set(by_name)
    acme = search(cli, query, "--filter", "organisation=Acme")
    assert {h["filename"] for h in acme["hits"]} == {"contracts.md"}

    unknown = run(cli, "search", query, "--tenant", "acme", "--filter", "company=Acme", code=2)
    assert "unknown filter key 'company'" in unknown and FILTER_KEYS in unknown.replace("\n", " ")
    title = run(
        cli,
        "search",
        query,
        "--tenant",
        "acme",
        "--filter",
        "title=a",
        "--filter",
        "title=b",
        code=2,
    )
    assert "--filter title" in title

    # set-meta: the onboarding document becomes legal's too; key= removes a key.
    onboarding = by_name["onboarding.md"]
    out = run(cli, "set-meta", onboarding, "department=legal", "owner=ann", "--tenant", "acme")
    assert json.loads(out) == {"department": "legal", "owner": "ann"}
    legal = search(cli, query, "--filter", "meta.department=legal")
    assert {h["filename"] for h in legal["hits"]} == set(by_name)
    out = run(cli, "set-meta", onboarding, "owner=", "organisation=Globex", "--tenant", "acme")
    assert json.loads(out.split("\n}")[0] + "\n}") == {
        "department": "legal",
        "organisation": "Globex",
    }
    assert "re-indexed its 1 chunks" in out
    globex = search(cli, "Globex", "--mode", "bm25")
    assert {h["filename"] for h in globex["hits"]} == {"onboarding.md"}
    missing = run(cli, "set-meta", "no-such-id", "a=b", "--tenant", "acme", code=1)
    assert "not found" in missing

    asked = json.loads(
        run(cli, "ask", query, "--tenant", "acme", "--json", "--filter", "organisation=Globex")
    )
    assert {s["filename"] for s in asked["sources"]} == {"onboarding.md"}
