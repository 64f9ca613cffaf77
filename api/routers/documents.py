"""Documents: upload (one or many files, answered 202 at once; the work is queued), list,
status, metadata, original file, chunks and delete. The work is ``ingest.documents``; this
module only wires HTTP to it. Other tenants' ids answer 404."""

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
    DocumentMetadataIn,
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
from ingest.user_metadata import InvalidMetadata, Metadata, parse_metadata
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
                        "title": {
                            "type": "string",
                            "description": "The title (short for the metadata key `title`).",
                        },
                        "metadata": {
                            "type": "string",
                            "description": "A JSON object of your own metadata for every "
                            'file, e.g. {"department": "legal", "organisation": "Apple Inc."}'
                            ": text, numbers, booleans or lists of them; at most 50 keys and "
                            "8 KB. title, organisation, period and document_type override the "
                            "extracted ones. Invalid metadata: 422, nothing stored.",
                        },
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
        metadata = _metadata(form.getlist("metadata"))
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
            metadata,
        )
    finally:
        await form.close()


def _tags(values: list[Any]) -> list[str]:
    tags = {t.strip() for v in values if isinstance(v, str) for t in v.split(",")}
    return sorted(t for t in tags if t)


def _metadata(values: list[Any]) -> Metadata | None:
    """The ``metadata`` field (a JSON object), checked before any file is stored."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidMetadata("send one `metadata` field (a JSON object) per upload")
    if not isinstance(values[0], str):
        raise InvalidMetadata("`metadata` must be a text field holding a JSON object, not a file")
    return parse_metadata(values[0]) if values[0].strip() else None


def _add_all(
    queue: TaskQueue,
    db: Database,
    settings: Settings,
    scope: TenantScope,
    limits: TenantLimits,
    files: list[UploadFile],
    tags: list[str],
    title: str | None,
    metadata: Metadata | None,
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
                    metadata=metadata,
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


@router.patch(
    "/documents/{document_id}",
    response_model=DocumentOut,
    summary="Change a document's metadata (merged; null removes a key)",
)
def patch_document(
    document_id: str,
    body: DocumentMetadataIn,
    scope: TenantDep,
    db: Annotated[Database, Depends(get_database)],
    services: ServicesDep,
    queue: TaskQueueDep,
) -> DocumentOut:
    """Filters see the new metadata at once. When title, organisation, period or
    document_type change, the document's chunks are re-indexed with the new contextual
    header: before the answer for a document of up to 200 chunks, else by a queued task
    (search then uses the old header for a few seconds)."""
    # Committed before the task is queued (its worker must read the new metadata).
    with db.session() as session:
        update = service.update_metadata(
            session, services, scope, document_id, body.metadata, replace=body.replace
        )
        out = DocumentOut.of(update.document)
    if update.reindex == "queued":
        queue.submit(TaskName.REINDEX_DOCUMENT, scope.tenant_id, document_id)
    return out


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
