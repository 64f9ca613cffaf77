"""What every ``ragkb`` command shares: the consoles it prints to, the database session
or the process's ``Services`` that turn our errors into a message and exit code 1, and the
``key=value`` arguments of ``--meta``, ``set-meta`` and ``--filter``."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from core import db as database
from core.errors import RagkbError
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from retrieval.document_match import MetadataFilters
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


def key_values(values: list[str] | None, what: str) -> list[tuple[str, str]]:
    """``key=value`` arguments as pairs (the value may be empty); exit code 2 on another
    form."""
    pairs: list[tuple[str, str]] = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            err_console.print(f"[red]error:[/red] {what} {item!r}: write it as key=value")
            raise typer.Exit(2)
        pairs.append((key.strip(), value.strip()))
    return pairs


def _put(into: dict[str, Any], key: str, value: Any) -> None:
    """A repeated key collects its values in a list."""
    if key not in into:
        into[key] = value
    elif isinstance(into[key], list):
        into[key].append(value)
    else:
        into[key] = [into[key], value]


def metadata_of(values: list[str] | None, what: str = "--meta") -> dict[str, Any]:
    """Document metadata from ``key=value`` arguments: values are text, a repeated key is
    a list, and ``key=`` (no value) is null (``set-meta``: remove the key)."""
    metadata: dict[str, Any] = {}
    for key, value in key_values(values, what):
        if value == "":
            metadata[key] = None
        elif metadata.get(key) is not None:
            _put(metadata, key, value)
        else:
            metadata[key] = value
    return metadata


FILTER_KEYS = ("organisation", "period", "document_type", "title")


def filters_of(values: list[str] | None) -> MetadataFilters | None:
    """``--filter key=value`` arguments as the API's ``filters``: keys organisation, period,
    document_type, title, or ``meta.KEY`` for your own metadata; a repeated key matches any
    of its values. Exit code 2 on an unknown key or an invalid value."""
    from pydantic import ValidationError

    from retrieval.document_match import MetadataFilters

    pairs = key_values(values, "--filter")
    if not pairs:
        return None
    body: dict[str, Any] = {}
    allowed = ", ".join(FILTER_KEYS) + " or meta.<key> (your own metadata)"
    for key, value in pairs:
        if key.startswith("meta.") and key[len("meta.") :].strip():
            _put(body.setdefault("metadata", {}), key[len("meta.") :].strip(), value)
        elif key in FILTER_KEYS:
            _put(body, key, value)
        else:
            err_console.print(
                f"[red]error:[/red] unknown filter key {key!r}; the allowed keys are {allowed}"
            )
            raise typer.Exit(2)
    try:
        return MetadataFilters.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = " ".join(["--filter", *(str(p) for p in first.get("loc", ()))])
        err_console.print(f"[red]error:[/red] {where}: {first['msg']}")
        raise typer.Exit(2) from exc
