"""Content-addressed file storage per tenant: a file is stored once per tenant under the
SHA-256 of its bytes, in ``tenant_dir(files_dir, scope)/ab/abcdef…``.

Uploads are streamed to a temporary file in the tenant's folder while being hashed and
counted, so a file over the size limit is refused (413) without being held in memory,
and a partial upload never appears under a content address.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.errors import BadRequest, PayloadTooLarge
from core.tenancy import TenantScope, tenant_dir

_READ_SIZE = 1024 * 1024


class EmptyFile(BadRequest):
    status_code = 422
    code = "empty_file"


@dataclass(frozen=True, slots=True)
class SpooledUpload:
    """An upload written to a temporary file, not yet at its content address."""

    path: Path
    sha256: str
    size: int


def spool(
    files_root: Path, scope: TenantScope, source: BinaryIO, max_bytes: int, filename: str
) -> SpooledUpload:
    """Copy ``source`` into the tenant's folder, hashing it; 413 past ``max_bytes``,
    422 when empty. The caller stores or discards the result."""
    folder = tenant_dir(files_root, scope)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            while block := source.read(_READ_SIZE):
                size += len(block)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"{filename}: the file is larger than the limit of {max_bytes:,} bytes"
                    )
                digest.update(block)
                out.write(block)
        if size == 0:
            raise EmptyFile(f"{filename}: the file is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SpooledUpload(path=path, sha256=digest.hexdigest(), size=size)


def content_path(files_root: Path, scope: TenantScope, sha256: str) -> Path:
    return tenant_dir(files_root, scope) / sha256[:2] / sha256


def commit(files_root: Path, scope: TenantScope, upload: SpooledUpload) -> Path:
    """Move a spooled upload to its content address (an existing copy is kept)."""
    target = content_path(files_root, scope, upload.sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        upload.path.unlink(missing_ok=True)
    else:
        os.replace(upload.path, target)
    return target


def discard(upload: SpooledUpload) -> None:
    upload.path.unlink(missing_ok=True)


def remove(files_root: Path, scope: TenantScope, sha256: str) -> None:
    """Delete a stored file (the caller checks that no document still refers to it)."""
    content_path(files_root, scope, sha256).unlink(missing_ok=True)


def relative_path(files_root: Path, path: Path) -> str:
    """What ``Document.storage_path`` holds: relative, so the data dir can move."""
    return str(path.relative_to(files_root))
