"""Backup and restore of one tenant: a ``.tar.gz`` with a manifest, the tenant's database
rows (tenant, API key hashes, documents, chunks, BM25 statistics, query log with feedback,
chat workspaces) as JSON lines, and its stored files. The index is not in the archive: it
is derived data, rebuilt from the chunks on restore (no re-parsing).

Ids are kept, so API keys, document ids, citations and links stay valid after a restore
into another installation (another data directory and database, SQLite or PostgreSQL).
Restoring over an existing tenant with the same id or slug is refused unless ``replace``.

Chat workspace secrets stay encrypted with the source installation's ``RAGKB_SECRET_KEY``:
the target needs the same key to use them (restore says so when it cannot decrypt them).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from core import db as database
from core.errors import BadRequest, Conflict
from core.models import (
    ApiKey,
    Base,
    Bm25CorpusStat,
    Bm25TermStat,
    ChatIntegration,
    Chunk,
    Document,
    DocumentStatus,
    QueryLog,
    Tenant,
    UTCDateTime,
)
from core.secrets import SecretBox
from core.settings import Settings
from core.tenancy import TenantScope, scoped, tenant_dir
from ingest.documents import IN_FLIGHT
from services.container import Services

log = logging.getLogger("ragkb.backup")

FORMAT = "ragkb-tenant-backup"
VERSION = 1
# In insertion order (parents first); each has a tenant_id column (the tenant: its id).
TABLES: tuple[type[Base], ...] = (
    Tenant,
    ApiKey,
    Document,
    Chunk,
    Bm25TermStat,
    Bm25CorpusStat,
    QueryLog,
    ChatIntegration,
)
_BATCH = 1000
# Documents that were being processed when the backup ran: restored as queued (their
# partial chunks are left out), so the target processes them again.
_UNFINISHED = {DocumentStatus.QUEUED, *IN_FLIGHT}


class BackupError(BadRequest):
    code = "invalid_backup"


@dataclass
class Manifest:
    tenant_id: str
    slug: str
    created_at: str
    tables: dict[str, int] = field(default_factory=dict)
    files: int = 0
    embedding_model: str = ""
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class RestoreResult:
    tenant_id: str
    slug: str
    rows: dict[str, int]
    files: int
    chunks_indexed: int
    warnings: list[str]


def backup_tenant(session: Session, settings: Settings, slug_or_id: str, out: Path) -> Manifest:
    """Write the tenant's archive to ``out`` (atomically: a partial archive never appears)."""
    tenant = session.scalar(
        select(Tenant).where((Tenant.slug == slug_or_id) | (Tenant.id == slug_or_id))
    )
    if tenant is None:
        raise BadRequest(f"tenant {slug_or_id!r} not found", code="not_found")
    scope = TenantScope.of(tenant)
    manifest = Manifest(
        tenant_id=tenant.id,
        slug=tenant.slug,
        created_at=datetime.now().astimezone().isoformat(),
        embedding_model=settings.models.embedding_model,
    )
    unfinished = set(
        session.scalars(
            scoped(select(Document.id), Document, scope).where(Document.status.in_(_UNFINISHED))
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for model in TABLES:
            table = _table(model)
            rows = _dump_rows(session, table, tenant.id, unfinished)
            manifest.tables[table.name] = len(rows)
            _add_bytes(archive, f"tables/{table.name}.jsonl", b"".join(rows))
        folder = tenant_dir(settings.files_dir, scope)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
            if path.name.startswith(".upload-"):
                continue  # an upload in progress, not a stored file
            archive.add(path, arcname=f"files/{path.relative_to(folder).as_posix()}")
            manifest.files += 1
        _add_bytes(archive, "manifest.json", manifest.to_json())
    partial.replace(out)
    return manifest


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _tenant_column(table: Table) -> str:
    return "id" if table.name == Tenant.__tablename__ else "tenant_id"


def _dump_rows(session: Session, table: Table, tenant_id: str, unfinished: set[str]) -> list[bytes]:
    stmt = select(table).where(table.c[_tenant_column(table)] == tenant_id)
    if "id" in table.c:
        stmt = stmt.order_by(table.c.id)
    out: list[bytes] = []
    for row in session.execute(stmt).mappings():
        values = {name: _to_json(value) for name, value in row.items()}
        if table.name == Chunk.__tablename__ and values["document_id"] in unfinished:
            continue
        if table.name == Document.__tablename__ and values["id"] in unfinished:
            values.update(
                status=DocumentStatus.QUEUED.value,
                progress=0.0,
                chunk_count=0,
                heartbeat_at=None,
                error=None,
            )
        out.append(json.dumps(values, ensure_ascii=False, sort_keys=True).encode() + b"\n")
    return out


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return value


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


def read_manifest(archive: tarfile.TarFile) -> Manifest:
    raw = _member_bytes(archive, "manifest.json")
    try:
        values = json.loads(raw)
        manifest = Manifest(**values)
    except (ValueError, TypeError) as exc:
        raise BackupError(f"the archive's manifest is invalid: {exc}") from exc
    if manifest.format != FORMAT:
        raise BackupError(f"not a ragkb tenant backup (format {manifest.format!r})")
    if manifest.version > VERSION:
        raise BackupError(
            f"backup format version {manifest.version} is newer than this ragkb reads "
            f"({VERSION}): upgrade ragkb first"
        )
    return manifest


def _member_bytes(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        member = archive.getmember(name)
    except KeyError as exc:
        raise BackupError(f"the archive has no {name}") from exc
    handle = archive.extractfile(member)
    if handle is None:
        raise BackupError(f"{name} in the archive is not a file")
    return handle.read()


def restore_tenant(
    session: Session,
    services: Services,
    source: Path,
    *,
    replace: bool = False,
) -> RestoreResult:
    """Restore an archive made by :func:`backup_tenant` into this installation, then rebuild
    the tenant's index from its chunks. The caller commits: every row is in the session's
    transaction. Files are written after the rows are inserted; if the restore fails later,
    they have no committed document and the startup sweep removes them."""
    settings = services.settings
    with _open_archive(source) as archive:
        manifest = read_manifest(archive)
        scope = TenantScope(tenant_id=manifest.tenant_id, slug=manifest.slug)
        _make_room(session, services, scope, replace)
        rows = {
            _table(model).name: _restore_table(session, archive, _table(model)) for model in TABLES
        }
        session.flush()
        files = _restore_files(archive, tenant_dir(settings.files_dir, scope))
    warnings = _check_secrets(session, settings, scope)
    if manifest.embedding_model != settings.models.embedding_model:
        warnings.append(
            f"the backup was indexed with {manifest.embedding_model}; this installation "
            f"embeds with {settings.models.embedding_model}: the index is rebuilt with the latter"
        )
    indexed = services.indexer.rebuild(scope, session)
    return RestoreResult(manifest.tenant_id, manifest.slug, rows, files, indexed, warnings)


def _open_archive(source: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(source, "r:gz")  # the caller closes it
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"cannot read {source}: {exc}") from exc


def _make_room(session: Session, services: Services, scope: TenantScope, replace: bool) -> None:
    existing = list(
        session.scalars(
            # The tenants table itself (its id is the tenant id): no tenant_id column to scope.
            select(Tenant).where((Tenant.id == scope.tenant_id) | (Tenant.slug == scope.slug))
        )
    )
    if not existing:
        return
    if not replace:
        names = ", ".join(f"{t.slug} ({t.id})" for t in existing)
        raise Conflict(
            f"tenant {names} already exists here: pass --replace to overwrite it",
            code="tenant_exists",
        )
    for tenant in existing:
        old = TenantScope.of(tenant)
        services.indexer.vector_index.delete_tenant(old)
        # Children first: SQLite enforces no cascade unless asked to.
        for model in reversed(TABLES):
            table = _table(model)
            session.execute(delete(table).where(table.c[_tenant_column(table)] == tenant.id))
        folder = tenant_dir(services.settings.files_dir, old)
        if folder.is_dir():
            shutil.rmtree(folder)
    session.flush()


def _restore_table(session: Session, archive: tarfile.TarFile, table: Table) -> int:
    known = set(table.c.keys())
    count = 0
    for batch in _batches(_member_bytes(archive, f"tables/{table.name}.jsonl")):
        rows = []
        for values in batch:
            unknown = set(values) - known
            if unknown:
                raise BackupError(
                    f"{table.name} in the backup has columns this database lacks "
                    f"({', '.join(sorted(unknown))}): run `ragkb db upgrade` first"
                )
            rows.append({k: _from_json(table, k, v) for k, v in values.items()})
        session.execute(insert(table), rows)
        count += len(rows)
    return count


def _batches(data: bytes) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            batch.append(json.loads(line))
        except ValueError as exc:
            raise BackupError(f"a row of the backup is not valid JSON: {exc}") from exc
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _from_json(table: Table, column: str, value: Any) -> Any:
    if value is not None and isinstance(table.c[column].type, UTCDateTime):
        return datetime.fromisoformat(value)
    return value


def _restore_files(archive: tarfile.TarFile, folder: Path) -> int:
    """Stored files under ``files/``: only plain files, only inside the tenant's folder."""
    count = 0
    for member in archive.getmembers():
        name = PurePosixPath(member.name)
        if not name.parts or name.parts[0] != "files":
            continue
        relative = PurePosixPath(*name.parts[1:])
        if (
            not member.isfile()
            or not relative.parts
            or relative.is_absolute()
            or any(part in ("", ".", "..") for part in relative.parts)
        ):
            raise BackupError(f"refusing an unsafe entry in the archive: {member.name!r}")
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = archive.extractfile(member)
        assert handle is not None
        with target.open("wb") as out:
            while block := handle.read(1024 * 1024):
                out.write(block)
        count += 1
    return count


def _check_secrets(session: Session, settings: Settings, scope: TenantScope) -> list[str]:
    rows = list(session.scalars(scoped(select(ChatIntegration), ChatIntegration, scope)))
    if not rows:
        return []
    box = SecretBox.from_settings(settings)
    try:
        for row in rows:
            box.decrypt(row.signing_secret_encrypted)
    except ValueError:
        return [
            f"{len(rows)} chat workspace(s) restored, but their secrets were encrypted with "
            "another RAGKB_SECRET_KEY: set the source installation's key to use them"
        ]
    return []


def open_database(settings: Settings) -> database.Database:
    """The target database, migrated to head (an empty installation may be brand new)."""
    settings.ensure_dirs()
    database.upgrade(settings.sqlalchemy_url)
    return database.Database.from_settings(settings)
