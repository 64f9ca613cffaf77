"""What every ``ragkb`` command shares: the consoles it prints to, and the database session
or the process's ``Services`` that turn our errors into a message and exit code 1."""

from __future__ import annotations

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
