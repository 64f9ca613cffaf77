"""A tenant's documents from the command line: ``ragkb ingest`` (store, parse, chunk and
index files), ``ragkb set-meta`` (a document's metadata), ``ragkb reindex`` (rebuild the
index from the stored chunks), and ``ragkb backup`` / ``ragkb restore`` (one tenant's rows
and files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from api.cli.common import (
    cli_services,
    cli_session,
    console,
    err_console,
    metadata_of,
    reported_errors,
)
from core import tenants
from core.settings import get_settings


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (folders recursively)."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    tags: str = typer.Option("", help="Comma-separated tags for every file."),
    meta: list[str] = typer.Option(
        None,
        "--meta",
        help="Metadata for every file, as key=value (repeatable; a repeated key is a list). "
        "title, organisation, period and document_type override the extracted ones.",
    ),
) -> None:
    """Ingest files: store, parse, chunk and index each one, with a progress bar per file
    and a summary table at the end (exit code 1 when a file failed)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from ingest import batch
    from ingest.user_metadata import check_metadata
    from services.container import build_services
    from tasks.names import TaskName
    from tasks.queue import CeleryQueue

    force_offline()
    pairs = {k: v for k, v in metadata_of(meta).items() if v is not None}
    with reported_errors():  # invalid metadata: a message before any file is stored
        metadata = check_metadata(pairs) if pairs else None
    settings = get_settings()
    settings.ensure_dirs()
    try:
        files = batch.expand(paths)
    except FileNotFoundError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with cli_session(settings) as session:
        scope = scope_for_slug(session, tenant)
    # Opens the index only if it works here (in-process); with Celery the workers do.
    services = build_services(settings)
    db = services.db
    tag_list = sorted({t.strip() for t in tags.split(",") if t.strip()})
    try:
        todo, results = batch.add_files(settings, db, scope, files, tag_list, metadata)
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[stage]}"),
            TimeElapsedColumn(),
        )
        # With Celery the workers do the work (and hold the index); here we follow it.
        queue = CeleryQueue(settings) if settings.tasks.mode == "celery" else None
        with Progress(*columns, console=console) as progress:
            tasks = {r.name: progress.add_task(r.name, total=100, stage="queued") for r in todo}
            if queue is not None:
                for result in todo:
                    queue.submit(
                        TaskName.INGEST_DOCUMENT, scope.tenant_id, result.document_id or ""
                    )
            for result in todo:

                def show(percent: float, stage: str, task: Any = tasks[result.name]) -> None:
                    progress.update(task, completed=percent, stage=stage)

                if queue is None:
                    results.append(batch.process(services, scope, result, show))
                else:
                    results.append(batch.wait_for(db, result, show))
        if queue is not None:
            queue.close()
    finally:
        services.close()  # flush the embedded index before the process exits
        db.dispose()
    _ingest_summary(results)
    if any(r.status != "ready" for r in results):
        raise typer.Exit(1)


def _ingest_summary(results: list[Any]) -> None:
    table = Table("file", "status", "version", "pages", "chunks", "seconds", "message")
    for r in sorted(results, key=lambda r: r.name):
        status = r.status + (" (duplicate)" if r.duplicate else "")
        bad = r.status in ("failed", "rejected")
        colour = "green" if r.status == "ready" else "red" if bad else ""
        table.add_row(
            escape(r.name),
            f"[{colour}]{status}[/{colour}]" if colour else status,
            "" if r.version is None else str(r.version),
            "" if r.pages is None else str(r.pages),
            str(r.chunks),
            f"{r.seconds:.1f}",
            escape(r.message),
        )
    console.print(table)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    console.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


def set_meta_command(
    document_id: str = typer.Argument(..., help="The document's id."),
    pairs: list[str] = typer.Argument(
        None,
        help="key=value to set (a repeated key is a list), key= to remove a key.",
        show_default=False,
    ),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    replace: bool = typer.Option(
        False, "--replace", help="The pairs become the whole metadata (none: clear it)."
    ),
) -> None:
    """Change a document's metadata, as PATCH /v1/documents/{id} does; when its title,
    organisation, period or document_type change, its chunks are re-indexed here."""
    import json

    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from ingest.documents import update_metadata

    changes = metadata_of(pairs, "metadata")
    if not changes and not replace:
        err_console.print("[red]error:[/red] give key=value pairs (or --replace to clear)")
        raise typer.Exit(2)
    force_offline()
    settings = get_settings()
    with cli_services(settings) as services, services.db.session() as session:
        scope = scope_for_slug(session, tenant)
        update = update_metadata(
            session, services, scope, document_id, changes, replace=replace, inline_max_chunks=None
        )
        metadata = dict(update.document.user_metadata or {})
        chunks = update.document.chunk_count
    typer.echo(json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True))
    if update.reindex == "done":
        console.print(f"re-indexed its {chunks} chunks with the new header")


def reindex_command(
    tenant: str = typer.Option(None, "--tenant", help="Tenant slug (default: every tenant)."),
) -> None:
    """Rebuild index points and BM25 statistics from the stored chunks (no re-parsing), for
    one tenant or all: after a lost or corrupt index, or a restore."""
    from core.model_loading import force_offline
    from core.tenancy import TenantScope, scope_for_slug
    from ingest.metadata import refresh_metadata

    force_offline()
    settings = get_settings()
    # cli_services closes the index at the end: flushed before the process exits.
    with cli_services(settings) as services, services.db.session() as session:
        if tenant is not None:
            scopes = [scope_for_slug(session, tenant)]
        else:
            rows = tenants.list_tenants(session)
            scopes = [TenantScope.of(t) for t in rows]
        for scope in scopes:
            # Documents ingested before metadata extraction get theirs from their chunks,
            # so that the rebuilt points carry the contextual header.
            refreshed = refresh_metadata(session, scope)
            if refreshed:
                console.print(f"tenant {scope.slug}: metadata extracted for {refreshed} documents")
            count = services.indexer.rebuild(scope, session)
            session.commit()  # each tenant's statistics as soon as its points are in
            console.print(f"tenant {scope.slug}: {count} chunks re-indexed")


def backup_command(
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug (or id)."),
    out: Path = typer.Option(..., "--out", help="The archive to write (.tar.gz)."),
) -> None:
    """Back up one tenant: its rows (keys, documents, chunks, query log...) and files."""
    from ingest.backup import backup_tenant

    settings = get_settings()
    with cli_session(settings) as session:
        manifest = backup_tenant(session, settings, tenant, out)
    rows = ", ".join(f"{n} {name}" for name, n in manifest.tables.items() if n)
    console.print(f"tenant {manifest.slug} backed up to {out}: {rows}; {manifest.files} files")


def restore_command(
    archive: Path = typer.Argument(..., help="An archive made by `ragkb backup`."),
    replace: bool = typer.Option(
        False, "--replace", help="Overwrite a tenant with the same id or slug."
    ),
) -> None:
    """Restore a tenant from a backup (ids kept) and rebuild its index from its chunks.
    Run it while the server is stopped in the embedded mode (one process opens the index)."""
    from core.model_loading import force_offline
    from ingest.backup import open_database, restore_tenant
    from services.container import build_services

    force_offline()
    settings = get_settings()
    services = build_services(settings, open_database(settings))
    try:
        with reported_errors(), services.db.session() as session:
            result = restore_tenant(session, services, archive, replace=replace)
    finally:
        services.close()
        services.db.dispose()
    rows = ", ".join(f"{n} {name}" for name, n in result.rows.items() if n)
    console.print(
        f"tenant {result.slug} restored: {rows}; {result.files} files; "
        f"{result.chunks_indexed} chunks indexed"
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
