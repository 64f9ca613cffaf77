"""Documents: upload (one or many files, answered 202 at once; the work is queued), list,
status, original file, chunks and delete. The work is ``ingest.documents``; this module
only wires HTTP to it. Other tenants' ids answer 404."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import (
    ServicesDep,
    SessionDep,
    SettingsDep,
    TaskQueueDep,
    TenantDep,
    TenantLimitsDep,
    get_database,
)
from api.schemas import (
    ChunkOut,
    DocumentOut,
    DocumentPage,
    RejectedFile,
    UploadedDocument,
    UploadOut,
)
from core.db import Database
from core.errors import BadRequest, NotFound, PayloadTooLarge, RagkbError, UnsupportedMediaType
from core.limits import TenantLimits
from core.models import DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope
from ingest import documents as service
from ingest import storage
from tasks.names import TaskName
from tasks.queue import TaskQueue

router = APIRouter(prefix="/v1", tags=["documents"])

# Multipart framing around the files (boundaries, headers, small fields).
_FORM_OVERHEAD_BYTES = 1024 * 1024


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        "tags": {"type": "string", "description": "Comma-separated tags."},
                        "title": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/documents",
    status_code=202,
    response_model=UploadOut,
    summary="Upload one or many files; each is parsed, chunked and indexed in the background",
    openapi_extra=_UPLOAD_SCHEMA,
)
async def upload_documents(
    request: Request,
    scope: TenantDep,
    limits: TenantLimitsDep,
    settings: SettingsDep,
    db: Annotated[Database, Depends(get_database)],
    queue: TaskQueueDep,
) -> UploadOut:
    # Read the form ourselves (not as parameters) so that an oversized request is refused
    # from its Content-Length before any of its body is read.
    content_length = request.headers.get("content-length")
    limit = (
        settings.limits.max_upload_bytes * settings.limits.max_files_per_upload
        + _FORM_OVERHEAD_BYTES
    )
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"the upload is larger than the limit of {limit:,} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMediaType("send the files as multipart/form-data (field `files`)")
    form = await request.form(max_files=settings.limits.max_files_per_upload)
    try:
        files = [
            part
            for name in ("files", "file")
            for part in form.getlist(name)
            if isinstance(part, UploadFile)
        ]
        if not files:
            raise BadRequest(
                "no file in the upload: send one or more `files` parts", code="no_file"
            )
        tags = _tags(form.getlist("tags"))
        title = form.get("title")
        return await run_in_threadpool(
            _add_all,
            queue,
            db,
            settings,
            scope,
            limits,
            files,
            tags,
            title if isinstance(title, str) and title.strip() else None,
        )
    finally:
        await form.close()


def _tags(values: list[Any]) -> list[str]:
    tags = {t.strip() for v in values if isinstance(v, str) for t in v.split(",")}
    return sorted(t for t in tags if t)


def _add_all(
    queue: TaskQueue,
    db: Database,
    settings: Settings,
    scope: TenantScope,
    limits: TenantLimits,
    files: list[UploadFile],
    tags: list[str],
    title: str | None,
) -> UploadOut:
    out = UploadOut(documents=[])
    errors: list[RagkbError] = []
    for upload in files:
        filename = service.upload_filename(upload.filename)
        try:
            # One transaction per file: a bad file never undoes the others.
            with db.session() as session:
                result = service.add_document(
                    session,
                    settings,
                    scope,
                    filename,
                    upload.file,
                    tags=tags,
                    title=title,
                    limits=limits,
                )
                document = result.document
                accepted = UploadedDocument(
                    id=document.id,
                    filename=document.filename,
                    status=document.status,
                    version=document.version,
                    duplicate=not result.created,
                )
        except RagkbError as exc:
            errors.append(exc)
            out.rejected.append(
                RejectedFile(
                    filename=filename,
                    status_code=exc.status_code,
                    code=exc.code,
                    message=exc.message,
                )
            )
            continue
        if result.needs_processing:  # queued only once its row is committed
            queue.submit(TaskName.INGEST_DOCUMENT, scope.tenant_id, accepted.id)
        out.documents.append(accepted)
    if not out.documents and errors:
        raise errors[0]
    return out


@router.get("/documents", response_model=DocumentPage, summary="The tenant's documents")
def list_documents(
    scope: TenantDep,
    session: SessionDep,
    status: DocumentStatus | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    # Bounded: the database's integers are 64-bit, and no tenant has 2**31 documents.
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> DocumentPage:
    rows, total = service.list_documents(
        session, scope, status=status, tag=tag, limit=limit, offset=offset
    )
    return DocumentPage(
        items=[DocumentOut.of(d) for d in rows], total=total, limit=limit, offset=offset
    )


@router.get("/documents/{document_id}", response_model=DocumentOut, summary="One document")
def get_document(document_id: str, scope: TenantDep, session: SessionDep) -> DocumentOut:
    return DocumentOut.of(service.get_document(session, scope, document_id))


@router.get(
    "/documents/{document_id}/chunks",
    response_model=list[ChunkOut],
    summary="A document's chunks, in order",
)
def get_chunks(document_id: str, scope: TenantDep, session: SessionDep) -> list[ChunkOut]:
    service.get_document(session, scope, document_id)
    return [
        ChunkOut.model_validate(c) for c in service.document_chunks(session, scope, document_id)
    ]


@router.get(
    "/documents/{document_id}/file",
    response_class=FileResponse,
    summary="The original file, as uploaded",
)
def get_file(
    document_id: str, scope: TenantDep, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    document = service.get_document(session, scope, document_id)
    path = storage.content_path(settings.files_dir, scope, document.sha256)
    if not path.exists():
        raise NotFound(f"the file of document {document_id!r} is missing")
    return FileResponse(path, media_type=document.media_type, filename=document.filename)


@router.delete(
    "/documents/{document_id}",
    status_code=204,
    summary="Delete a document: its chunks leave the index and the database, then its file",
)
def delete_document(
    document_id: str, scope: TenantDep, session: SessionDep, services: ServicesDep
) -> Response:
    service.delete_document(session, services, scope, document_id)
    return Response(status_code=204)
