"""Tables as HTML (what unstructured gives for DOCX, XLSX, PPTX and HTML, and what the PDF
layout parser emits): their rows, and a text rendering with one row per line."""

from __future__ import annotations


def table_rows(html: str) -> list[tuple[str, str]]:
    """(text, HTML) of each row of the first table in ``html``; a row's text is its cells
    joined by " | ". Empty for HTML that does not parse."""
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except Exception:  # malformed HTML: callers fall back to the element's text
        return []
    rows: list[tuple[str, str]] = []
    for tr in root.iter("tr"):
        cells = [" ".join(cell.text_content().split()) for cell in tr if cell.tag in {"td", "th"}]
        text = " | ".join(cells)
        tr.tail = None
        rows.append((text, lxml.html.tostring(tr, encoding="unicode")))
    return rows


def table_text(html: str) -> str | None:
    """The table as lines ``label | value | value``: each line item stays on one line with
    its figures (unstructured's own text joins every cell with spaces). None when the HTML
    has no rows."""
    lines = [text.strip(" |") for text, _ in table_rows(html)]
    lines = [line for line in lines if line]
    return "\n".join(lines) if lines else None
