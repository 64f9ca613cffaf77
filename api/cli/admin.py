"""Tenants and their API keys: ``ragkb tenants create|list|disable|enable`` and
``ragkb keys create|list|revoke`` (the CLI side of the admin routes)."""

from __future__ import annotations

import typer
from rich.table import Table

from api.cli.common import cli_session, console, err_console
from core import tenants
from core.models import KeyRole

tenants_app = typer.Typer(help="Tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


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
