"""Stored runs (``eval_runs``): creating, progressing, finishing, listing, and comparing a
run with the previous finished run of the same data set in the same tenant.

:func:`execute` is the one body of a run, for the CLI (a throw-away tenant) and for the API's
queued task (the tenant's own documents alike).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import RagkbError, without_paths
from core.models import EvalRun, EvalRunStatus, utcnow
from core.settings import Settings
from core.tenancy import TenantScope, get_owned, scoped
from eval import corpus as corpora
from eval import report
from eval.datasets import Dataset, questions_from_records
from eval.runner import RunOptions, evaluate
from services.container import Services

log = logging.getLogger("ragkb.eval")

Progress = Callable[[float, str], None]
# Metrics compared between runs (higher is better for all of them).
COMPARED = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
ANSWER_COMPARED = (
    "citation_precision",
    "citation_recall",
    "token_f1",
    "groundedness",
    "figure_stated",
    "first_citation_document",
    "first_citation_page",
    "refusal_recall",
)
# Share of a run's progress spent preparing the corpus (the rest: the questions).
_PREPARE_SHARE = 0.3


def run_dir(settings: Settings, run_id: str) -> Path:
    return settings.storage.data_dir / "eval" / run_id


def create_run(
    session: Session,
    scope: TenantScope,
    dataset: str,
    options: RunOptions,
    *,
    questions: list[dict[str, Any]] | None = None,
) -> EvalRun:
    params: dict[str, Any] = {
        "answers": options.answers,
        "baselines": options.baselines,
        "depth": options.depth,
        "tolerance": options.tolerance,
    }
    if questions is not None:
        params["questions"] = questions
    run = EvalRun(
        tenant_id=scope.tenant_id,
        dataset=dataset,
        modes=list(options.modes),
        params=params,
        status=EvalRunStatus.QUEUED,
    )
    session.add(run)
    session.flush()
    return run


def options_of(run: EvalRun) -> RunOptions:
    params = run.params or {}
    return RunOptions(
        modes=list(run.modes),
        baselines=bool(params.get("baselines", True)),
        answers=bool(params.get("answers", False)),
        depth=int(params.get("depth", 100)),
        tolerance=float(params.get("tolerance", 0.01)),
    )


def list_runs(session: Session, scope: TenantScope, limit: int = 50) -> list[EvalRun]:
    stmt = scoped(select(EvalRun), EvalRun, scope).order_by(EvalRun.created_at.desc()).limit(limit)
    return list(session.scalars(stmt))


def previous_run(session: Session, run: EvalRun) -> EvalRun | None:
    """The latest finished run of the same data set in the same tenant, before ``run``."""
    scope = TenantScope(run.tenant_id, "")
    stmt = (
        scoped(select(EvalRun), EvalRun, scope)
        .where(
            EvalRun.dataset == run.dataset,
            EvalRun.status == EvalRunStatus.DONE,
            EvalRun.id != run.id,
            EvalRun.created_at <= run.created_at,
        )
        .order_by(EvalRun.created_at.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def compare(
    current: dict[str, Any], previous: dict[str, Any], tolerance: float, previous_id: str
) -> dict[str, Any]:
    """Deltas per mode and metric present in both, and the regressions: drops larger than
    ``tolerance`` (absolute)."""
    deltas: dict[str, dict[str, float]] = {}
    regressions: list[dict[str, Any]] = []

    def check(section: str, name: str, now: Any, before: Any) -> None:
        if not isinstance(now, int | float) or not isinstance(before, int | float):
            return
        delta = round(float(now) - float(before), 4)
        deltas.setdefault(section, {})[name] = delta
        if delta < -tolerance:
            regressions.append(
                {
                    "mode": section,
                    "metric": name,
                    "previous": before,
                    "current": now,
                    "delta": delta,
                }
            )

    for mode, entry in current.get("modes", {}).items():
        old = previous.get("modes", {}).get(mode)
        if old:
            for name in COMPARED:
                check(mode, name, entry.get(name), old.get(name))
    if "answers" in current and "answers" in previous:
        for name in ANSWER_COMPARED:
            check("answers", name, current["answers"].get(name), previous["answers"].get(name))
    return {
        "previous_run": previous_id,
        "tolerance": tolerance,
        "deltas": deltas,
        "regressions": regressions,
    }


def execute(
    services: Services,
    run_id: str,
    *,
    dataset: Dataset | None = None,
    out_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run a stored run: with ``dataset`` (CLI) its corpus is prepared in the run's tenant;
    without, the run's uploaded questions are asked of the tenant's own documents. Writes
    the run directory, stores the results and returns them. A failure is stored on the run
    and raised."""
    settings, db = services.settings, services.db
    report_to = progress or (lambda fraction, label: None)
    with db.session() as session:
        run = session.get(EvalRun, run_id)
        if run is None:
            raise LookupError(f"eval run {run_id} not found")
        run.status = EvalRunStatus.RUNNING
        run.started_at = utcnow()
        run.progress = 0.0
        scope = TenantScope(run.tenant_id, "")
        options = options_of(run)
        records = (run.params or {}).get("questions")
        dataset_name = run.dataset
    last = [0.0]

    def update(fraction: float, label: str, persist: bool = True) -> None:
        report_to(fraction, label)
        # Not while the corpus is being written: SQLite has one writer at a time.
        if persist and (fraction - last[0] >= 0.02 or fraction >= 1.0):
            last[0] = fraction
            with db.session() as s:
                row = s.get(EvalRun, run_id)
                if row is not None:
                    row.progress = round(100.0 * fraction, 1)

    started = time.perf_counter()
    try:
        if dataset is not None:
            corpus = corpora.prepare(
                services,
                dataset,
                lambda f, label: update(_PREPARE_SHARE * f, label, persist=False),
            )
        else:
            dataset = Dataset(dataset_name, "tenant", questions_from_records(records or []))
            with db.session() as session:
                from core.models import Tenant

                tenant = session.get(Tenant, scope.tenant_id)
                scope = TenantScope(scope.tenant_id, tenant.slug if tenant else "")
                corpus = corpora.tenant_corpus(session, scope)
        prepared = time.perf_counter()
        results = evaluate(
            services,
            dataset,
            corpus,
            options,
            lambda f, label: update(_PREPARE_SHARE + (1 - _PREPARE_SHARE) * f, label),
        )
        results["run_id"] = run_id
        results["timings_s"] = {
            "prepare": round(prepared - started, 1),
            "queries": round(time.perf_counter() - prepared, 1),
        }
        with db.session() as session:
            run = session.get(EvalRun, run_id)
            assert run is not None
            before = previous_run(session, run)
            results["created_at"] = run.created_at.isoformat()
            if before is not None:
                results["comparison"] = compare(
                    results, before.results or {}, options.tolerance, before.id
                )
        target = out_dir or run_dir(settings, run_id)
        results["timings_s"]["total"] = round(time.perf_counter() - started, 1)
        report.write(target, results)
        with db.session() as session:
            run = session.get(EvalRun, run_id)
            assert run is not None
            run.results = _stored(results)
            run.report_path = str(target)
            run.status = EvalRunStatus.DONE
            run.progress = 100.0
            run.finished_at = utcnow()
        return results
    except Exception as exc:
        log.exception("eval run %s failed", run_id)
        with db.session() as session:
            run = session.get(EvalRun, run_id)
            if run is not None:
                run.status = EvalRunStatus.FAILED
                run.error = failure_message(exc)
                run.finished_at = utcnow()
        raise


def failure_message(exc: Exception) -> str:
    """What a failed run tells its tenant: our own errors' messages, a validation error's
    fields and reasons; never a library's raw text, a stack or a path (those are in the
    server log)."""
    if isinstance(exc, RagkbError):
        return without_paths(exc.message)[:2000]
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)[:3]
        )
        return f"a question could not be asked ({problems})"[:2000]
    return "the run stopped on an internal error; the server log has the details"


def run_dataset(
    services: Services,
    dataset: Dataset,
    options: RunOptions,
    *,
    out_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[str, dict[str, Any]]:
    """A stored run of ``dataset`` in its throw-away tenant (``ragkb eval run``)."""
    options.validate()
    with services.db.session() as session:
        scope = corpora.eval_tenant(session, dataset)
        run_id = create_run(session, scope, dataset.name, options).id
    return run_id, execute(services, run_id, dataset=dataset, out_dir=out_dir, progress=progress)


def _stored(results: dict[str, Any]) -> dict[str, Any]:
    """What the row keeps: everything but the per-query details (those are in the run
    directory's results.json)."""
    kept = {
        k: v for k, v in results.items() if k not in ("per_query", "query_text", "latency_samples")
    }
    if "answers" in kept:
        kept["answers"] = {k: v for k, v in kept["answers"].items() if k != "items"}
    return json.loads(json.dumps(kept))


def get_run(session: Session, scope: TenantScope, run_id: str) -> EvalRun:
    """404 for another tenant's run (``core.tenancy.get_owned``)."""
    run: EvalRun = get_owned(session, EvalRun, run_id, scope)
    return run
