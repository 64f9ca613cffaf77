"""The retrieved passages generation works from: a :class:`Source` is a
``core.passages.Passage`` with the scores it was ranked by. Generation never imports
retrieval; the answering service (``services.answering``) turns search hits into sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.passages import Passage


@dataclass(frozen=True, slots=True)
class Source(Passage):
    """One passage, in retrieval rank order; its [n] number is its place in the prompt."""

    score: float = 0.0
    scores: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, passage: Passage, *, score: float, scores: Mapping[str, float]) -> Source:
        """The source for a ranked passage (a search hit and the scores it got)."""
        return cls(
            chunk_id=str(passage.chunk_id),
            document_id=str(passage.document_id),
            filename=passage.filename,
            text=passage.text,
            page_start=passage.page_start,
            page_end=passage.page_end,
            heading_path=tuple(passage.heading_path or ()),
            printed_pages=passage.printed_pages,
            document_title=passage.document_title,
            organisations=tuple(passage.organisations or ()),
            period=passage.period,
            period_end=passage.period_end,
            score=float(score),
            scores=dict(scores or {}),
        )

    def summary(self, n: int | None = None, snippet_chars: int = 280) -> dict[str, Any]:
        """The JSON form of a source in API answers (no full text: the quote carries it)."""
        snippet = self.text if len(self.text) <= snippet_chars else self.text[:snippet_chars] + "…"
        return {
            "n": n,
            **self.location(),
            "score": self.score,
            "scores": dict(self.scores),
            "snippet": snippet,
        }
