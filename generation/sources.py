"""The retrieved passages generation works from, independent of the retrieval package's
types: anything with the attributes of a search hit can become a :class:`Source`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class HitLike(Protocol):
    """The attributes generation reads from a retrieval hit (retrieval.search.SearchHit)."""

    @property
    def chunk_id(self) -> str: ...
    @property
    def document_id(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def page_start(self) -> int | None: ...
    @property
    def page_end(self) -> int | None: ...
    @property
    def heading_path(self) -> Sequence[str]: ...
    @property
    def score(self) -> float: ...
    @property
    def scores(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class Source:
    """One passage, in retrieval rank order; its [n] number is its place in the prompt."""

    chunk_id: str
    document_id: str
    filename: str
    text: str
    page_start: int | None = None
    page_end: int | None = None
    heading_path: tuple[str, ...] = ()
    score: float = 0.0
    scores: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_hit(cls, hit: HitLike) -> Source:
        return cls(
            chunk_id=str(hit.chunk_id),
            document_id=str(hit.document_id),
            filename=hit.filename,
            text=hit.text,
            page_start=hit.page_start,
            page_end=hit.page_end,
            heading_path=tuple(hit.heading_path or ()),
            score=float(hit.score),
            scores=dict(hit.scores or {}),
        )

    @property
    def heading(self) -> str | None:
        return " > ".join(self.heading_path) if self.heading_path else None

    @property
    def pages(self) -> str | None:
        """ "3" or "3-4"; None when the format has no pages."""
        if self.page_start is None:
            return None
        if self.page_end is None or self.page_end == self.page_start:
            return str(self.page_start)
        return f"{self.page_start}-{self.page_end}"

    def describe(self) -> str:
        """ "report.pdf, p. 3" for humans (refusals, CLI)."""
        return f"{self.filename}, p. {self.pages}" if self.pages else self.filename

    def summary(self, n: int | None = None, snippet_chars: int = 280) -> dict[str, Any]:
        """The JSON form of a source in API answers (no full text: the quote carries it)."""
        snippet = self.text if len(self.text) <= snippet_chars else self.text[:snippet_chars] + "…"
        return {
            "n": n,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "filename": self.filename,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "heading": self.heading,
            "score": self.score,
            "scores": dict(self.scores),
            "snippet": snippet,
        }


def sources_from_hits(hits: Iterable[HitLike]) -> list[Source]:
    return [Source.from_hit(hit) for hit in hits]
