"""The metadata a tenant gives its documents (``documents.user_metadata``): read from an
upload's ``metadata`` form field or a ``PATCH``, checked, and merged.

A JSON object of at most :data:`MAX_KEYS` keys and :data:`MAX_BYTES` bytes (as compact
JSON). A value is a string, a number, a boolean, or a list of those; ``null`` means "no
value" (in a ``PATCH``: remove the key). The keys ``title``, ``organisation``, ``period``
and ``document_type`` override what ingestion extracted (``core.document_facts.facts_of``),
so they must be text (``organisation`` may be a list of names). Every problem is a 422
(:class:`InvalidMetadata`) whose message names it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from core.document_facts import OVERRIDABLE
from core.errors import RagkbError

MAX_KEYS = 50
MAX_BYTES = 8 * 1024
MAX_KEY_CHARS = 100
MAX_LIST_ITEMS = 100

Metadata = dict[str, Any]


class InvalidMetadata(RagkbError):
    status_code = 422
    code = "invalid_metadata"


def parse_metadata(text: str) -> Metadata:
    """An upload's ``metadata`` form field (a JSON object) as checked metadata; ``null``
    values are dropped (a new document has nothing to remove)."""
    if len(text.encode()) > MAX_BYTES:
        raise InvalidMetadata(f"metadata is larger than {MAX_BYTES:,} bytes")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidMetadata(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidMetadata(
            f'metadata must be a JSON object such as {{"department": "legal"}}, '
            f"not {_json_type(value)}"
        )
    return check_metadata({k: v for k, v in value.items() if v is not None})


def merge_metadata(current: Mapping[str, Any], changes: Mapping[str, Any]) -> Metadata:
    """``current`` with ``changes`` applied as a JSON merge patch (RFC 7396, one level):
    a key set to ``null`` is removed, any other value replaces the key's; keys not named
    stay. The result is checked."""
    if not isinstance(changes, Mapping):
        raise InvalidMetadata(f"metadata must be a JSON object, not {_json_type(changes)}")
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return check_metadata(merged)


def check_metadata(metadata: Mapping[str, Any]) -> Metadata:
    """``metadata`` if it keeps the rules (see the module), else :class:`InvalidMetadata`."""
    if len(metadata) > MAX_KEYS:
        raise InvalidMetadata(f"metadata has {len(metadata)} keys; at most {MAX_KEYS} are allowed")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidMetadata("metadata keys must be non-empty text")
        if len(key) > MAX_KEY_CHARS:
            raise InvalidMetadata(
                f"metadata key {key[:40]!r}... is longer than {MAX_KEY_CHARS} characters"
            )
        _check_value(key, value)
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_BYTES:
        raise InvalidMetadata(f"metadata is {size:,} bytes as JSON; at most {MAX_BYTES:,}")
    return dict(metadata)


def _check_value(key: str, value: Any) -> None:
    if key in OVERRIDABLE:
        texts = value if key == "organisation" and isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v.strip() for v in texts):
            allowed = "text or a list of texts" if key == "organisation" else "text"
            raise InvalidMetadata(
                f"metadata {key!r} overrides the extracted {key} and must be {allowed}, "
                f"not {_json_type(value)}"
            )
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise InvalidMetadata(
                f"metadata {key!r} lists {len(value)} values; at most {MAX_LIST_ITEMS}"
            )
        for item in value:
            if not _scalar(item):
                raise InvalidMetadata(
                    f"metadata {key!r}: a list may hold text, numbers and booleans only, "
                    f"not {_json_type(item)}"
                )
    elif not _scalar(value):
        raise InvalidMetadata(
            f"metadata {key!r} must be text, a number, a boolean or a list of them, "
            f"not {_json_type(value)}"
        )


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
