"""Running ragkb: ``serve`` (the API server), ``worker`` (a Celery worker), ``init`` (the
first run: folders, migrations, an admin key) and ``db upgrade`` (migrations)."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import cli_session, console, err_console
from core import db as database
from core import tenants
from core.models import KeyRole
from core.settings import get_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _fresh_metrics_dir() -> None:
    """With PROMETHEUS_MULTIPROC_DIR, each process writes its metric values into that
    folder: create it, and drop the files of processes of an earlier run (prometheus_client
    would add them up forever). Runs before anything imports the metrics."""
    import os

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink(missing_ok=True)


def serve(
    host: str = typer.Option(None, help="Bind address (default: RAGKB_HOST)."),
    port: int = typer.Option(None, help="Port (default: RAGKB_PORT)."),
    workers: int = typer.Option(
        1,
        min=1,
        help="Server processes (stateless; needs PostgreSQL, Redis and a Qdrant server: the "
        "embedded index opens in one process only). Set PROMETHEUS_MULTIPROC_DIR so "
        "/metrics adds them up.",
    ),
) -> None:
    """Run the API server."""
    import uvicorn

    settings = get_settings()
    host = host or settings.server.host
    port = port or settings.server.port
    console.print(f"ragkb listening on http://{host}:{port}  (API docs: /docs)")
    _fresh_metrics_dir()
    uvicorn.run("api.app:create_app_from_env", factory=True, host=host, port=port, workers=workers)


def init() -> None:
    """Create the data folders, apply migrations and print a new admin key (first run only)."""
    settings = get_settings()
    settings.ensure_dirs()
    database.upgrade(settings.sqlalchemy_url)
    console.print(f"data directory: {settings.storage.data_dir}")
    console.print(f"database: {_redacted_url(settings.sqlalchemy_url)}")
    if settings.security.admin_key is not None:
        console.print("admin key: taken from RAGKB_ADMIN_KEY")
        return
    with cli_session(settings) as session:
        if tenants.has_admin_key(session):
            console.print(
                "admin key: already created (shown once at first init; "
                "`ragkb keys create --admin` makes another)"
            )
            return
        issued = tenants.issue_key(session, role=KeyRole.ADMIN, name="init")
    typer.echo(f"admin key (shown once, store it now): {issued.plaintext}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply database migrations up to REVISION (default: head)."""
    settings = get_settings()
    database.upgrade(settings.sqlalchemy_url, revision)
    console.print(f"database at {revision}: {_redacted_url(settings.sqlalchemy_url)}")


def worker(
    queues: str = typer.Option(
        "heavy,light",
        help="heavy (ingestion, prefetch 1), light (eval runs, housekeeping) or both.",
    ),
    concurrency: int = typer.Option(1, help="Tasks processed at once by this worker."),
    pool: str = typer.Option(
        None,
        help="Celery pool; default: prefork with a Qdrant server, threads with the "
        "embedded index (which one process only may open).",
    ),
    loglevel: str = typer.Option("INFO", help="Celery log level."),
) -> None:
    """Run a Celery worker for the heavy and/or light queue (RAGKB_TASK_MODE=celery)."""
    from core.model_loading import force_offline
    from services.worker import make_worker_app
    from tasks.celery_app import worker_argv

    force_offline()
    _fresh_metrics_dir()
    settings = get_settings()
    try:
        argv = worker_argv(settings, queues, concurrency=concurrency, pool=pool, loglevel=loglevel)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    settings.ensure_dirs()
    make_worker_app(settings).worker_main(argv)


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
