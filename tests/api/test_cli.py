"""The command line acts on the data directory directly: init, tenants, keys."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.settings import get_settings

KEY = re.compile(r"rk_[0-9a-f]{12}_[A-Za-z0-9_-]+")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path / "kb"))
    monkeypatch.delenv("RAGKB_DATABASE_URL", raising=False)
    monkeypatch.delenv("RAGKB_ADMIN_KEY", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_init_prints_the_admin_key_once(cli: CliRunner, tmp_path: Path) -> None:
    first = run(cli, "init")
    assert len(KEY.findall(first)) == 1
    assert (tmp_path / "kb" / "ragkb.db").exists()
    second = run(cli, "init")
    assert not KEY.findall(second)
    assert "already created" in second


def test_tenants_and_keys_lifecycle(cli: CliRunner) -> None:
    run(cli, "init")
    run(cli, "tenants", "create", "acme", "--name", "Acme Corp")
    out = run(cli, "tenants", "create", "acme", code=1)
    assert "already exists" in out
    assert "acme" in run(cli, "tenants", "list")
    created = run(cli, "keys", "create", "--tenant", "acme", "--name", "laptop")
    prefix = re.search(r"prefix ([0-9a-f]{12})", created)
    assert prefix and KEY.search(created)
    assert prefix.group(1) in run(cli, "keys", "list", "--tenant", "acme")
    assert "revoked" in run(cli, "keys", "revoke", prefix.group(1))
    run(cli, "tenants", "disable", "acme")
    run(cli, "tenants", "enable", "acme")
    assert "not found" in run(cli, "keys", "create", "--tenant", "nope", code=1)
    run(cli, "keys", "create", code=2)


def test_db_upgrade_is_idempotent(cli: CliRunner) -> None:
    run(cli, "db", "upgrade")
    assert "head" in run(cli, "db", "upgrade")


def test_library_noise_appears_only_with_verbose(cli: CliRunner, tmp_path: Path) -> None:
    """A real `ragkb` process: what it prints is its own unless --verbose (the model
    library's "Loading weights" bars and log lines otherwise land in the output)."""
    import subprocess
    import sys

    run(cli, "init")
    run(cli, "tenants", "create", "quiet")
    env = {**os.environ, "RAGKB_DATA_DIR": str(tmp_path / "kb"), "RAGKB_LOG_JSON": "false"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # as in a user's shell

    def search(*flags: str) -> str:
        argv = [*flags, "search", "vacation", "--tenant", "quiet"]
        done = subprocess.run(
            [sys.executable, "-c", "from api.cli import app; app()", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    quiet = search()
    assert "second stage" in quiet
    assert "Loading weights" not in quiet and "sentence_transformers" not in quiet
    verbose = search("--verbose")
    assert "Loading weights" in verbose and "second stage" in verbose
