"""What every ``ragkb`` command shares: the consoles it prints to, and the database session
or the process's ``Services`` that turn our errors into a message and exit code 1."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from core import db as database
from core.errors import RagkbError
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.container import Services

console = Console()
err_console = Console(stderr=True)


class _OursOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "ragkb" or record.name.startswith("ragkb.")


def quiet_output(verbose: bool) -> None:
    """What a command prints is ours: its answer, its own progress bars, and ragkb's own
    warnings. The libraries' progress bars, warnings and log lines appear with
    ``--verbose`` only."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0" if verbose else "1"
    if not verbose:
        warnings.filterwarnings("ignore")
    root = logging.getLogger()
    if root.handlers:  # someone configured logging already (a test runner): theirs stands
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_OursOnly())
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Our errors (a ``RagkbError``) become a message on stderr and exit code 1."""
    try:
        yield
    except RagkbError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


@contextmanager
def cli_session(settings: Settings | None = None) -> Iterator[Session]:
    """A database session for a CLI command; our errors become a message and exit code 1."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    db = database.Database.from_settings(settings)
    try:
        with reported_errors(), db.session() as session:
            yield session
    finally:
        db.dispose()


@contextmanager
def cli_services(settings: Settings | None = None) -> Iterator[Services]:
    """The command's process ``Services`` (index, models, generator), closed when it ends:
    the embedded index is one process's at a time. Our errors become a message and exit
    code 1."""
    # Imported here: `ragkb --help` and the admin commands need no models.
    from services.container import build_services

    settings = settings or get_settings()
    settings.ensure_dirs()
    services = build_services(settings)
    try:
        with reported_errors():
            yield services
    finally:
        services.close()
        services.db.dispose()
