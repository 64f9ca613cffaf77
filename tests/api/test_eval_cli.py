"""``ragkb eval run`` / ``ragkb eval list`` on a tiny BEIR folder, in a fresh data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings
from tests.support.helpers import FIXTURE_DIR

FIXTURES = FIXTURE_DIR / "eval"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path / "kb"))
    monkeypatch.setenv("RAGKB_LOG_JSON", "false")
    monkeypatch.delenv("RAGKB_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_eval_run_writes_the_run_directory_and_lists_it(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["eval", "run", "--dataset", str(FIXTURES / "beir"), "--modes", "bm25,hybrid+rerank"]
    result = cli.invoke(app, [*args, "--out", str(out), "--no-baselines"])
    assert result.exit_code == 0, result.output
    assert "hybrid+rerank" in result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["modes"]) == {"bm25", "hybrid+rerank"}
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    listed = cli.invoke(app, ["eval", "list"])
    assert listed.exit_code == 0 and "beir" in listed.output and "done" in listed.output
    bad = cli.invoke(app, ["eval", "run", "--dataset", "nowhere-to-be-found"])
    assert bad.exit_code == 2 and "neither a known data set" in bad.output
