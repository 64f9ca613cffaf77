"""Offline evaluation from the command line: ``ragkb eval run`` (a data set in a throw-away
tenant, with reports and a comparison with the previous run) and ``ragkb eval list``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from api.cli.common import cli_session, console, err_console
from core import db as database
from core.settings import get_settings

eval_app = typer.Typer(help="Offline evaluation runs and reports.", no_args_is_help=True)


@eval_app.command("run")
def eval_run(
    dataset: str = typer.Option(
        ...,
        help="scifact, cmrc2018, sec-10q, sec-figures, or a BEIR folder / SQuAD JSON / "
        "CSV-JSONL path.",
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
    from services.container import build_services

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
    services = build_services(settings)
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

            run_id, results = run_dataset(services, data, options, out_dir=out, progress=show)
    finally:
        services.close()
        services.db.dispose()
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
        if a.get("figure_stated") is not None or a.get("refusal_recall") is not None:
            console.print(
                f"figure stated {a['figure_stated']} (look-ups {a['figure_stated_lookup']}, "
                f"derived {a['figure_stated_derived']}); first citation on the document "
                f"{a['first_citation_document']}, on the page {a['first_citation_page']}; "
                f"refusal recall {a['refusal_recall']}, precision {a['refusal_precision']}, "
                f"false refusals {a['false_refusal_rate']}"
            )
    for regression in results.get("comparison", {}).get("regressions", []):
        console.print(
            f"[red]regression:[/red] {regression['mode']} {regression['metric']} "
            f"{regression['previous']} -> {regression['current']}"
        )
    console.print(f"run {run_id}: report in {out or settings.storage.data_dir / 'eval' / run_id}")


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
