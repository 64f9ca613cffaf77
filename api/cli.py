"""The ``ragkb`` command line: a thin layer over the same functions the API calls.

Commands that work on tenant data take ``--tenant SLUG`` and act directly on the
database and data directory (no API key needed locally).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
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


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default: RAGKB_HOST)."),
    port: int = typer.Option(None, help="Port (default: RAGKB_PORT)."),
) -> None:
    """Run the API server."""
    import uvicorn

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    console.print(f"ragkb listening on http://{host}:{port}  (API docs: /docs)")
    uvicorn.run("api.app:create_app_from_env", factory=True, host=host, port=port)


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


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
