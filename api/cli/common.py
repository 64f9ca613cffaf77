"""What every ``ragkb`` command shares: the consoles it prints to and the database session
that turns our errors into a message and exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from core import db as database
from core.errors import RagkbError
from core.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True)


@contextmanager
def cli_session(settings: Settings | None = None) -> Iterator[Session]:
    """A database session for a CLI command; our errors become a message and exit code 1."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    db = database.Database.from_settings(settings)
    try:
        with db.session() as session:
            yield session
    except RagkbError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
