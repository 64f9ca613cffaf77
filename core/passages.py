"""The one passage type: a chunk of a tenant's document, with where it comes from.

Search hits (``retrieval.search.SearchHit``), the sources an answer is generated from
(``generation.sources.Source``) and the citations of an answer
(``generation.citations.Citation``, which points to one) are all passages: retrieval and
generation may not import each other, so the fields they share are declared once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk's text, its document and file, its pages and its heading path."""

    chunk_id: str
    document_id: str
    filename: str
    text: str
    page_start: int | None = None
    page_end: int | None = None
    heading_path: Sequence[str] = field(default_factory=tuple)
    # The page numbers printed on those pages ("43" or "43-44"), where they differ from
    # the physical pages (a cover and contents before page 1).
    printed_pages: str | None = None
    # What the document is about (``core.document_facts``): its title, organisations and
    # period, so that a prompt and a refusal can say which filing a passage is from.
    document_title: str | None = None
    organisations: Sequence[str] = field(default_factory=tuple)
    period: str | None = None
    period_end: str | None = None  # ISO day the document's period ended

    @property
    def heading(self) -> str | None:
        """ "Part I > Item 2", or None when the chunk has no heading."""
        return " > ".join(self.heading_path) if self.heading_path else None

    @property
    def pages(self) -> str | None:
        """ "3" or "3-4"; None when the format has no pages."""
        if self.page_start is None:
            return None
        if self.page_end is None or self.page_end == self.page_start:
            return str(self.page_start)
        return f"{self.page_start}-{self.page_end}"

    def location(self) -> dict[str, str | int | None]:
        """Where the passage is, in the JSON of answers and the query log (not its text)."""
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "filename": self.filename,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "heading": self.heading,
            "printed_pages": self.printed_pages,
        }

    def describe(self) -> str:
        """ "report.pdf, p. 3" (or "p. 45 (printed 43)") for humans (refusals, CLI)."""
        if not self.pages:
            return self.filename
        printed = f" (printed {self.printed_pages})" if self.printed_pages else ""
        return f"{self.filename}, p. {self.pages}{printed}"
