"""Evaluation runs on the tenant's own documents: upload a question set (CSV or JSONL: a
question, the documents that should be found, optionally the answer), get a queued run,
follow its progress, read its metrics and its HTML report. The work is ``eval``; this
module only wires HTTP to it. Other tenants' runs answer 404."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import HTMLResponse

from api.deps import SessionDep, TaskQueueDep, TenantDep, TenantLimitsDep, get_database
from api.schemas import EvalRunList, EvalRunOut
from core.db import Database
from core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from core.limits import reserve_questions
from core.models import EvalRunStatus
from eval import runs as service
from eval.datasets import load_question_set, questions_to_records
from eval.runner import DEFAULT_MODES, RunOptions
from tasks.names import TaskName

router = APIRouter(prefix="/v1/eval", tags=["eval"])

_MAX_QUESTION_SET_BYTES = 5 * 1024 * 1024


@router.post(
    "/runs",
    status_code=202,
    response_model=EvalRunOut,
    summary="Start an evaluation of your documents on an uploaded question set",
)
async def create_run(
    scope: TenantDep,
    session: SessionDep,
    queue: TaskQueueDep,
    limits: TenantLimitsDep,
    db: Annotated[Database, Depends(get_database)],
    file: Annotated[
        UploadFile,
        File(description="CSV (header row) or JSONL: question, expected_documents, answer."),
    ],
    modes: Annotated[str, Form(description="Comma-separated modes.")] = ",".join(DEFAULT_MODES),
    answers: Annotated[bool, Form(description="Also answer each question.")] = True,
    baselines: Annotated[bool, Form(description="Run the plain baselines beside.")] = True,
    dataset: Annotated[str | None, Form(description="A name; runs of one name compare.")] = None,
) -> EvalRunOut:
    content = await file.read(_MAX_QUESTION_SET_BYTES + 1)
    if len(content) > _MAX_QUESTION_SET_BYTES:
        raise PayloadTooLarge(f"the question set is larger than {_MAX_QUESTION_SET_BYTES:,} bytes")
    try:
        queries = load_question_set(content, file.filename or "questions.csv")
    except UnicodeDecodeError as exc:
        raise BadRequest("the question set is not UTF-8 text", code="invalid_question_set") from exc
    options = RunOptions(
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        answers=answers,
        baselines=baselines,
    )
    try:
        options.validate()
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_mode") from exc
    name = (dataset or Path(file.filename or "questions").stem or "questions").strip()[:200]
    # Every question of the run is a question asked: it counts against the daily quota, all
    # of them at once before the run is queued (a run that does not fit is refused whole).
    reserve_questions(db, scope, limits, count=len(queries))
    run = service.create_run(session, scope, name, options, questions=questions_to_records(queries))
    out = EvalRunOut.of(run)
    session.commit()  # queued only once its row is committed
    queue.submit(TaskName.EVAL_RUN, run.id, tenant=scope.tenant_id)
    return out


@router.get("/runs", response_model=EvalRunList, summary="Your evaluation runs, newest first")
def list_runs(scope: TenantDep, session: SessionDep) -> EvalRunList:
    return EvalRunList(items=[EvalRunOut.of(r) for r in service.list_runs(session, scope)])


@router.get("/runs/{run_id}", response_model=EvalRunOut, summary="Status and results of a run")
def get_run(run_id: str, scope: TenantDep, session: SessionDep) -> EvalRunOut:
    return EvalRunOut.of(service.get_run(session, scope, run_id))


@router.get(
    "/runs/{run_id}/report",
    response_class=HTMLResponse,
    summary="The run's HTML report (plots embedded)",
)
def get_report(run_id: str, scope: TenantDep, session: SessionDep) -> HTMLResponse:
    run = service.get_run(session, scope, run_id)
    if run.status is not EvalRunStatus.DONE:
        raise Conflict(f"eval run {run_id!r} is {run.status.value}", code="report_not_ready")
    path = Path(run.report_path or "") / "report.html"
    if not run.report_path or not path.is_file():
        raise NotFound(f"the report of eval run {run_id!r} is gone", code="report_missing")
    return HTMLResponse(path.read_text(encoding="utf-8"))
