"""The ``ragkb`` command line: a thin layer over the same functions the API calls.

Commands that work on tenant data take ``--tenant SLUG`` and act directly on the
database and data directory (no API key needed locally).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from core import db as database
from core import tenants
from core.errors import RagkbError
from core.models import KeyRole
from core.settings import Settings, get_settings

app = typer.Typer(help="ragkb: an enterprise RAG knowledge base.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
eval_app = typer.Typer(help="Offline evaluation runs and reports.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

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


@app.command()
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
    host = host or settings.host
    port = port or settings.port
    console.print(f"ragkb listening on http://{host}:{port}  (API docs: /docs)")
    _fresh_metrics_dir()
    uvicorn.run("api.app:create_app_from_env", factory=True, host=host, port=port, workers=workers)


@app.command()
def init() -> None:
    """Create the data folders, apply migrations and print a new admin key (first run only)."""
    settings = get_settings()
    settings.ensure_dirs()
    database.upgrade(settings.sqlalchemy_url)
    console.print(f"data directory: {settings.data_dir}")
    console.print(f"database: {_redacted_url(settings.sqlalchemy_url)}")
    if settings.admin_key is not None:
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


@tenants_app.command("create")
def tenants_create(slug: str, name: str = typer.Option(None, help="Display name.")) -> None:
    """Create a tenant with a unique SLUG."""
    with cli_session() as session:
        tenant = tenants.create_tenant(session, slug, name)
        console.print(f"tenant {tenant.slug} created (id {tenant.id})")


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants."""
    with cli_session() as session:
        table = Table("slug", "name", "id", "disabled", "created")
        for t in tenants.list_tenants(session):
            disabled = "yes" if t.disabled else ""
            table.add_row(t.slug, t.name, t.id, disabled, f"{t.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@tenants_app.command("disable")
def tenants_disable(slug: str) -> None:
    """Disable a tenant: all its keys are refused (403) until it is enabled again."""
    with cli_session() as session:
        tenants.update_tenant(session, slug, disabled=True)
    console.print(f"tenant {slug} disabled")


@tenants_app.command("enable")
def tenants_enable(slug: str) -> None:
    """Enable a disabled tenant."""
    with cli_session() as session:
        tenants.update_tenant(session, slug, disabled=False)
    console.print(f"tenant {slug} enabled")


@keys_app.command("create")
def keys_create(
    tenant: str = typer.Option(None, "--tenant", help="Tenant slug (a tenant key)."),
    admin: bool = typer.Option(False, "--admin", help="Create an admin key instead."),
    name: str = typer.Option("", help="A label for the key."),
) -> None:
    """Create an API key and print it once."""
    if admin == (tenant is not None):
        err_console.print("[red]error:[/red] pass either --tenant SLUG or --admin")
        raise typer.Exit(2)
    with cli_session() as session:
        owner = tenants.get_tenant(session, tenant) if tenant else None
        role = KeyRole.ADMIN if admin else KeyRole.TENANT
        issued = tenants.issue_key(session, role=role, tenant=owner, name=name)
    console.print(f"key id {issued.key.id} (prefix {issued.key.prefix})")
    typer.echo(f"API key (shown once, store it now): {issued.plaintext}")


@keys_app.command("list")
def keys_list(tenant: str = typer.Option(..., "--tenant", help="Tenant slug.")) -> None:
    """List a tenant's keys (prefixes only; keys are never stored)."""
    with cli_session() as session:
        table = Table("id", "prefix", "name", "created", "revoked")
        for k in tenants.list_keys(session, tenants.get_tenant(session, tenant)):
            revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
            table.add_row(k.id, k.prefix, k.name, f"{k.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key: str = typer.Argument(..., help="Key id or prefix.")) -> None:
    """Revoke an API key (by id or prefix)."""
    with cli_session() as session:
        row = tenants.revoke_key(session, key)
    console.print(f"key {row.prefix} revoked")


@app.command("search")
def search_command(
    query: str = typer.Argument(..., help="What to look for."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    top_k: int = typer.Option(10, "--top-k", min=1, max=100, help="Chunks to show."),
    mode: str = typer.Option("hybrid", help="dense, bm25 or hybrid."),
    rerank: bool = typer.Option(True, "--rerank/--no-rerank", help="Run the second stage."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON the API returns."),
) -> None:
    """Search a tenant's chunks, as POST /v1/search does."""
    # Imported here: loading torch and the models is only worth it for this command.
    from pydantic import ValidationError

    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from retrieval.search import SearchRequest, search

    force_offline()
    try:
        request = SearchRequest(query=query, top_k=top_k, mode=mode, rerank=rerank)
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    settings = get_settings()
    with cli_session(settings) as session:
        response = search(settings, session, scope_for_slug(session, tenant), request)
    if as_json:
        typer.echo(response.model_dump_json(indent=2))
        return
    table = Table("#", "score", "document", "page", "text")
    for rank, hit in enumerate(response.hits, start=1):
        page = "" if hit.page_start is None else str(hit.page_start)
        snippet = hit.text if len(hit.text) <= 160 else hit.text[:160] + "…"
        table.add_row(str(rank), f"{hit.score:.3f}", hit.filename, page, snippet)
    console.print(table)
    timings = ", ".join(f"{k} {v:.0f}" for k, v in response.timings.items())
    console.print(f"second stage: {response.reranker}; {timings}")


@app.command("ask")
def ask_command(
    question: str = typer.Argument(..., help="The question."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    top_k: int = typer.Option(
        None, "--top-k", min=1, max=50, help="Sources to retrieve (default: answer_top_k)."
    ),
    mode: str = typer.Option("hybrid", help="dense, bm25 or hybrid."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they come."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON the API returns."),
) -> None:
    """Answer a question from a tenant's documents, with citations, as POST /v1/query does."""
    from pydantic import ValidationError
    from rich.markup import escape

    from api.answering import Question, finish, retrieve
    from api.routers.query import query_out
    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from generation.answer import AnswerResult
    from retrieval.search import SearchRequest

    force_offline()
    settings = get_settings()
    top_k = top_k or settings.answer_top_k
    try:  # the same validation as the API's
        SearchRequest(query=question, top_k=top_k, mode=mode)
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    with cli_session(settings) as session:
        scope = scope_for_slug(session, tenant)
        asked = Question(text=question, top_k=top_k, mode=mode)  # type: ignore[arg-type]
        retrieved = retrieve(settings, session, scope, asked)
        result: AnswerResult | None = None
        # GeneratorUnavailable is a RagkbError: cli_session reports it.
        for event in retrieved.events(settings, stream=stream):
            if isinstance(event, AnswerResult):
                result = event
            elif stream and not as_json:
                typer.echo(event.text, nl=False)
        assert result is not None
        answered = finish(settings, session, scope, retrieved, result)
    query_id, timings = answered.query_id, answered.timings
    if as_json:
        out = query_out(query_id, result, answered.sources, timings)
        typer.echo(out.model_dump_json(indent=2))
        return
    typer.echo("" if stream else result.answer)
    if result.uncited:
        err_console.print("[yellow]warning:[/yellow] the answer cites no source")
    for c in result.citations:
        pages = "" if c.page_start is None else f", p. {c.page_start}"
        if c.page_end not in (None, c.page_start):
            pages += f"-{c.page_end}"
        where, quote = escape(f"{c.filename}{pages}"), escape(c.quote)
        console.print(f"[bold]\\[{c.n}][/bold] {where}: [dim]{quote}[/dim]", highlight=False)
    console.print(
        f"[dim]query {query_id}; generator {result.generator}; "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + "[/dim]"
    )


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (folders recursively)."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    tags: str = typer.Option("", help="Comma-separated tags for every file."),
) -> None:
    """Ingest files: store, parse, chunk and index each one, with a progress bar per file
    and a summary table at the end (exit code 1 when a file failed)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from ingest import batch
    from tasks.names import TaskName
    from tasks.queue import CeleryQueue

    force_offline()
    settings = get_settings()
    settings.ensure_dirs()
    try:
        files = batch.expand(paths)
    except FileNotFoundError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    with cli_session(settings) as session:
        scope = scope_for_slug(session, tenant)
    db = database.Database.from_settings(settings)
    tag_list = sorted({t.strip() for t in tags.split(",") if t.strip()})
    try:
        todo, results = batch.add_files(settings, db, scope, files, tag_list)
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[stage]}"),
            TimeElapsedColumn(),
        )
        # With Celery the workers do the work (and hold the index); here we follow it.
        queue = CeleryQueue(settings) if settings.task_mode == "celery" else None
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
                    results.append(batch.process(settings, db, scope, result, show))
                else:
                    results.append(batch.wait_for(db, result, show))
        if queue is not None:
            queue.close()
    finally:
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


@app.command()
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


@app.command("reindex")
def reindex_command(
    tenant: str = typer.Option(None, "--tenant", help="Tenant slug (default: every tenant)."),
) -> None:
    """Rebuild index points and BM25 statistics from the stored chunks (no re-parsing), for
    one tenant or all: after a lost or corrupt index, or a restore."""
    from core.model_loading import force_offline
    from core.tenancy import TenantScope, scope_for_slug
    from retrieval.indexer import close_indexers, get_indexer

    force_offline()
    settings = get_settings()
    try:
        with cli_session(settings) as session:
            if tenant is not None:
                scopes = [scope_for_slug(session, tenant)]
            else:
                rows = tenants.list_tenants(session)
                scopes = [TenantScope(tenant_id=t.id, slug=t.slug) for t in rows]
            for scope in scopes:
                count = get_indexer(settings).rebuild(scope, session)
                session.commit()  # each tenant's statistics as soon as its points are in
                console.print(f"tenant {scope.slug}: {count} chunks re-indexed")
    finally:
        close_indexers()  # flush the embedded index before the process exits


@app.command("backup")
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


@app.command("restore")
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
    from retrieval.indexer import close_indexers

    force_offline()
    settings = get_settings()
    db = open_database(settings)
    try:
        with db.session() as session:
            result = restore_tenant(session, settings, archive, replace=replace)
    except RagkbError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        close_indexers()
        db.dispose()
    rows = ", ".join(f"{n} {name}" for name, n in result.rows.items() if n)
    console.print(
        f"tenant {result.slug} restored: {rows}; {result.files} files; "
        f"{result.chunks_indexed} chunks indexed"
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")


@eval_app.command("run")
def eval_run(
    dataset: str = typer.Option(
        ..., help="scifact, cmrc2018, sec-10q, or a BEIR folder / SQuAD JSON / CSV-JSONL path."
    ),
    modes: str = typer.Option(
        "bm25,dense,hybrid,hybrid+rerank", help="Comma-separated retrieval modes."
    ),
    answers: bool = typer.Option(False, "--answers", help="Also answer every question."),
    baselines: bool = typer.Option(
        True, "--baselines/--no-baselines", help="Run rank_bm25 and exact dense beside."
    ),
    limit: int = typer.Option(None, help="Only the first N questions."),
    out: Path = typer.Option(None, help="Run directory (default: RAGKB_DATA_DIR/eval/<id>)."),
    data_root: Path = typer.Option(
        None, envvar="RAGKB_EVAL_DATA_DIR", help="Where the named data sets are (../shared/data)."
    ),
    split: str = typer.Option("test", help="BEIR qrels split."),
    tolerance: float = typer.Option(0.01, help="Drop against the previous run that is flagged."),
) -> None:
    """Evaluate retrieval (and answers) on a data set in a throw-away tenant; writes
    results.json, report.md and report.html, and compares with the previous run."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from core.model_loading import force_offline
    from eval.datasets import resolve
    from eval.runner import RunOptions
    from eval.runs import run_dataset

    force_offline()
    settings = get_settings()
    settings.ensure_dirs()
    database.upgrade(settings.sqlalchemy_url)
    options = RunOptions(
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        baselines=baselines,
        answers=answers,
        tolerance=tolerance,
    )
    try:
        options.validate()
        data = resolve(dataset, data_root, split=split).limited(limit)
    except (ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    db = database.Database.from_settings(settings)
    columns = (
        TextColumn(f"{data.name}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[stage]}", markup=False),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(data.name, total=100, stage="starting")

            def show(fraction: float, stage: str) -> None:
                progress.update(task, completed=100 * fraction, stage=stage)

            run_id, results = run_dataset(settings, db, data, options, out_dir=out, progress=show)
    finally:
        db.dispose()
    from eval.report import metric_rows

    header, rows = metric_rows(results)
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if "answers" in results:
        a = results["answers"]
        console.print(
            f"answers: refusal rate {a['refusal_rate']:.3f}, citation precision "
            f"{a['citation_precision']}, token F1 {a['token_f1']}, groundedness {a['groundedness']}"
        )
    for regression in results.get("comparison", {}).get("regressions", []):
        console.print(
            f"[red]regression:[/red] {regression['mode']} {regression['metric']} "
            f"{regression['previous']} -> {regression['current']}"
        )
    console.print(f"run {run_id}: report in {out or settings.data_dir / 'eval' / run_id}")


@eval_app.command("list")
def eval_list(
    tenant: str = typer.Option(None, "--tenant", help="Tenant slug (default: every tenant)."),
) -> None:
    """Stored evaluation runs, newest first."""
    from sqlalchemy import select

    from core.models import EvalRun, Tenant
    from core.tenancy import scope_for_slug
    from eval.runs import list_runs

    table = Table("run", "tenant", "dataset", "status", "ndcg@10 (default)", "created")
    with cli_session() as session:
        if tenant:
            runs = list_runs(session, scope_for_slug(session, tenant))
        else:
            runs = list(session.scalars(select(EvalRun).order_by(EvalRun.created_at.desc())))
        slugs = dict(session.execute(select(Tenant.id, Tenant.slug)).all())
        for run in runs:
            default = (run.results or {}).get("modes", {}).get("hybrid+rerank", {})
            table.add_row(
                run.id, slugs.get(run.tenant_id, "?"), run.dataset, run.status.value,
                str(default.get("ndcg@10", "")), run.created_at.isoformat(timespec="seconds"),
            )  # fmt: skip
    console.print(table)


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
