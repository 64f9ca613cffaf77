"""The index's shared types and the engine protocol: what the tenant gateway
(``retrieval.index``) and the engines (``index_edge``, ``index_client``) both speak.

Engines import this module, never the gateway, so the gateway can pick and build engines
without an import cycle (the same split as onyx's ``document_index/interfaces.py`` and
``factory.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from retrieval.bm25 import SparseVec

DENSE = "dense"
SPARSE = "bm25"
Mode = Literal["dense", "bm25", "hybrid"]


@dataclass(frozen=True, slots=True)
class PointFilter:
    """Which points an engine call may touch. ``tenant_id`` is mandatory: engines always
    put it in the ``must`` clause."""

    tenant_id: str
    point_ids: tuple[str, ...] | None = None
    document_ids: tuple[str, ...] | None = None
    version: int | None = None
    tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("an index filter needs a tenant id")


@dataclass(frozen=True, slots=True)
class IndexPoint:
    id: str
    dense: npt.NDArray[np.float32] | list[float]
    sparse: SparseVec
    payload: dict[str, Any]


@dataclass(slots=True)
class StoredPoint:
    """A point as read back: payload, and its vectors when asked for."""

    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: SparseVec | None = None
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class QuerySpec:
    mode: Mode
    dense: list[float] | None
    sparse: SparseVec | None
    limit: int
    candidates: int
    rrf_k: int


class IndexEngine(Protocol):
    """What an engine does; see ``index_edge`` and ``index_client``."""

    name: str

    def upsert(self, points: Sequence[IndexPoint]) -> None: ...
    def scroll(self, flt: PointFilter, with_vectors: bool) -> list[StoredPoint]: ...
    def delete(self, flt: PointFilter) -> None: ...
    def count(self, flt: PointFilter) -> int: ...
    def query(self, flt: PointFilter, spec: QuerySpec) -> list[StoredPoint]: ...
    def info(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
