"""The element every parser produces (unstructured's model: a category, its text, its
page and heading path, a table's HTML), and the one way a heading becomes a path label."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ParsedElement:
    type: str  # unstructured's category, e.g. "Title", "NarrativeText", "Table"
    text: str
    page: int | None
    heading_path: list[str]
    table_html: str | None = None
    page_label: str | None = None  # the page number printed on the page, if it differs
    caption: str | None = None  # a table's title lines, repeated in each of its chunks


def heading_label(text: str, limit: int = 200) -> str:
    """Headings are labels: one line, bounded (a misdetected paragraph must not bloat)."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
