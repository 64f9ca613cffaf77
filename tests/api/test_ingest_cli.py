"""``ragkb ingest``: files and folders (recursively) are stored, processed with a progress
bar per file and summarised in a table; a rejected file sets exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path / "kb"))
    monkeypatch.delenv("RAGKB_DATABASE_URL", raising=False)
    monkeypatch.setenv("RAGKB_TASK_MODE", "inprocess")
    monkeypatch.setenv("COLUMNS", "200")  # the summary table unwrapped
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_ingest_folder_with_progress_and_summary(cli: CliRunner, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "team").mkdir(parents=True)
    (inbox / "guide.md").write_text("# Guide\n\nThe VPN client must be updated monthly.\n")
    (inbox / "team" / "guide.md").write_text("# Team guide\n\nStand-ups start at 9:30.\n")
    (inbox / "empty.txt").write_bytes(b"")
    assert cli.invoke(app, ["init"]).exit_code == 0
    assert cli.invoke(app, ["tenants", "create", "acme"]).exit_code == 0

    result = cli.invoke(app, ["ingest", str(inbox), "--tenant", "acme", "--tags", "kb"])
    assert result.exit_code == 1, result.output  # the empty file was rejected
    out = result.output
    assert "team/guide.md" in out and "guide.md" in out
    assert "the file is empty" in out
    assert "2 ready" in out and "1 rejected" in out

    again = cli.invoke(app, ["ingest", str(inbox / "guide.md"), "--tenant", "acme"])
    assert again.exit_code == 0, again.output
    assert "ready (duplicate)" in again.output

    missing = cli.invoke(app, ["ingest", str(tmp_path / "nope"), "--tenant", "acme"])
    assert missing.exit_code == 2 and "no such file" in missing.output
    unknown = cli.invoke(app, ["ingest", str(inbox), "--tenant", "nobody"])
    assert unknown.exit_code == 1 and "not found" in unknown.output
