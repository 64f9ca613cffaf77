"""The ``ragkb`` command line: a thin layer over the same functions the API calls.

Commands that work on tenant data take ``--tenant SLUG`` and act directly on the
database and data directory (no API key needed locally).

This module builds ``app`` (the console script ``ragkb = "api.cli:app"``) from the
commands of its modules, one per area: ``server`` (serve, worker, init, db), ``admin``
(tenants, keys), ``questions`` (search, ask), ``documents`` (ingest, set-meta, reindex,
backup, restore) and ``evaluation`` (eval); ``common`` holds what they share.
"""

from __future__ import annotations

import typer

from api.cli import admin, documents, evaluation, questions, server
from api.cli.common import quiet_output

app = typer.Typer(help="ragkb: an enterprise RAG knowledge base.", no_args_is_help=True)


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show the libraries' progress bars, warnings and logs."
    ),
) -> None:
    # The server and the workers write service logs (core.logging), not command output.
    if ctx.invoked_subcommand not in ("serve", "worker"):
        quiet_output(verbose)


app.add_typer(server.db_app, name="db")
app.add_typer(admin.tenants_app, name="tenants")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(evaluation.eval_app, name="eval")

# Registered in this order so that `ragkb --help` lists the commands as it always has.
app.command()(server.serve)
app.command()(server.init)
app.command("search")(questions.search_command)
app.command("ask")(questions.ask_command)
app.command()(documents.ingest)
app.command("set-meta")(documents.set_meta_command)
app.command()(server.worker)
app.command("reindex")(documents.reindex_command)
app.command("backup")(documents.backup_command)
app.command("restore")(documents.restore_command)

__all__ = ["app"]
