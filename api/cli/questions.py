"""Asking the knowledge base: ``ragkb search`` (ranked chunks, as ``POST /v1/search``) and
``ragkb ask`` (a cited answer, as ``POST /v1/query``)."""

from __future__ import annotations

import typer
from rich.table import Table

from api.cli.common import cli_services, console, err_console, filters_of
from core.settings import get_settings

_FILTER_HELP = (
    "Only documents whose metadata matches, as key=value (repeatable; a repeated key "
    "matches any of its values): organisation, period, document_type, title, or meta.KEY "
    "for your own metadata. E.g. --filter organisation=Apple --filter period=2023-Q1."
)


def search_command(
    query: str = typer.Argument(..., help="What to look for."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    top_k: int = typer.Option(10, "--top-k", min=1, max=100, help="Chunks to show."),
    mode: str = typer.Option("hybrid", help="dense, bm25 or hybrid."),
    rerank: bool = typer.Option(True, "--rerank/--no-rerank", help="Run the second stage."),
    filters: list[str] = typer.Option(None, "--filter", help=_FILTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON the API returns."),
) -> None:
    """Search a tenant's chunks, as POST /v1/search does."""
    # Imported here: loading torch and the models is only worth it for this command.
    from pydantic import ValidationError

    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from retrieval.search import SearchRequest, search

    force_offline()
    metadata_filters = filters_of(filters)
    try:
        request = SearchRequest(
            query=query, top_k=top_k, mode=mode, rerank=rerank, filters=metadata_filters
        )
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    settings = get_settings()
    with cli_services(settings) as services, services.db.session() as session:
        response = search(
            settings,
            session,
            scope_for_slug(session, tenant),
            request,
            indexer=services.indexer,
            reranker=services.reranker,
        )
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
    console.print(f"second stage: {response.reranker}; documents: {response.documents}; {timings}")


def ask_command(
    question: str = typer.Argument(..., help="The question."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant slug."),
    top_k: int = typer.Option(
        None, "--top-k", min=1, max=50, help="Sources to retrieve (default: answer_top_k)."
    ),
    mode: str = typer.Option("hybrid", help="dense, bm25 or hybrid."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they come."),
    filters: list[str] = typer.Option(None, "--filter", help=_FILTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON the API returns."),
) -> None:
    """Answer a question from a tenant's documents, with citations, as POST /v1/query does."""
    from pydantic import ValidationError
    from rich.markup import escape

    from api.schemas import query_out
    from core.model_loading import force_offline
    from core.tenancy import scope_for_slug
    from generation.answer import AnswerResult
    from retrieval.search import SearchRequest
    from services.answering import Question, finish, retrieve

    force_offline()
    settings = get_settings()
    top_k = top_k or settings.answer.top_k
    metadata_filters = filters_of(filters)
    try:  # the same validation as the API's
        SearchRequest(query=question, top_k=top_k, mode=mode)
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    with cli_services(settings) as services, services.db.session() as session:
        scope = scope_for_slug(session, tenant)
        asked = Question(
            text=question,
            top_k=top_k,
            mode=mode,  # type: ignore[arg-type]
            filters=metadata_filters,
        )
        retrieved = retrieve(services, session, scope, asked)
        result: AnswerResult | None = None
        # GeneratorUnavailable is a RagkbError: cli_services reports it.
        for event in retrieved.events(stream=stream):
            if isinstance(event, AnswerResult):
                result = event
            elif stream and not as_json:
                typer.echo(event.text, nl=False)
        assert result is not None
        answered = finish(services, session, scope, retrieved, result)
    query_id, timings = answered.query_id, answered.timings
    if as_json:
        out = query_out(query_id, result, answered.sources, timings)
        typer.echo(out.model_dump_json(indent=2))
        return
    typer.echo("" if stream else result.answer)
    if result.uncited:
        err_console.print("[yellow]warning:[/yellow] the answer cites no source")
    for c in result.citations:
        where, quote = escape(c.passage.describe()), escape(c.quote)
        console.print(f"[bold]\\[{c.n}][/bold] {where}: [dim]{quote}[/dim]", highlight=False)
    console.print(
        f"[dim]query {query_id}; generator {result.generator}; "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + "[/dim]"
    )
