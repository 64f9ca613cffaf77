"""Find the tables on a PDF page from the alignment of its lines: financial statements set
with whitespace (a label, then figures in right-aligned columns) and ruled tables alike,
since both print each row as one line of cells.

A table is a run of lines in which several rows carry figures in the same columns. Above
it, the lines whose cells sit over those columns ("Three Months Ended", "December 31,",
"2022") are its header; a label-only line inside it ("Operating expenses:") is a row. The
result keeps each line item on one row with its figures, as text (``label | v | v``) and
as HTML, and its header rows composed into one line per column.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field

from ingest.pdf_layout import Cell, Line

# A figure as statements print it: 1,234  (1,234)  1.5  12%  $  —  -  n/a
_FIGURE = re.compile(
    r"^(?:[$€£¥]\s*)?\(?[-–—]?\s*[$€£¥]?\s*\d[\d,]*(?:\.\d+)?\s*\)?\s*%?$"
    r"|^[-–—]+$|^[$€£¥%]$|^\(?n/?[am]\)?$",
    re.IGNORECASE,
)
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_MONTH = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}\b", re.I
)
_CURRENCY_ONLY = re.compile(r"^[$€£¥]$")
# The most lines a header may have above a table's first row, and how far apart.
_MAX_HEADER_LINES = 4
_HEADER_GAP_EM = 2.6
# Lines further apart than this (in line heights) do not belong to one table.
_ROW_GAP_EM = 3.2


class TableTimeout(Exception):
    """Table detection on one page ran past its time bound."""


@dataclass(slots=True)
class Column:
    x0: float
    x1: float
    header: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Row:
    label: str
    values: list[str]


@dataclass(slots=True)
class Table:
    first_line: int  # index of its first line (header included) in the page's lines
    last_line: int  # inclusive
    columns: list[Column]
    label_header: str
    rows: list[Row]

    def header_cells(self) -> list[str]:
        """The header as one row: the label column's heading, then each column's."""
        headers = [" ".join(c.header) for c in self.columns]
        spans = [c.header[0] for c in self.columns if len(c.header) > 1]
        label = self.label_header
        if len(spans) == len(self.columns) and len(set(spans)) == 1 and not label:
            # One heading over every column ("Three Months Ended"): say it once, in front.
            label = spans[0]
            headers = [" ".join(c.header[1:]) for c in self.columns]
        return [label, *headers]

    def has_header(self) -> bool:
        return any(c.header for c in self.columns) or bool(self.label_header)

    def text(self) -> str:
        """One line per row: ``label | value | value``; the header first."""
        lines = [" | ".join(self.header_cells()).strip()] if self.has_header() else []
        for row in self.rows:
            cells = [row.label, *row.values] if any(row.values) else [row.label]
            lines.append(" | ".join(cells).rstrip(" |"))
        return "\n".join(lines)

    def html(self) -> str:
        parts = ["<table>"]
        if self.has_header():
            parts.append(
                "<tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in self.header_cells())
                + "</tr>"
            )
        for row in self.rows:
            cells = [row.label, *row.values]
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        return "".join(parts)


def is_figure(text: str) -> bool:
    return bool(_FIGURE.match(text.strip()))


def _is_data_row(line: Line, min_x: float) -> bool:
    """A line with figures right of its label: at least one figure cell after ``min_x``,
    and nothing but figures there."""
    values = [c for c in line.cells if c.x0 >= min_x]
    if not values or (len(values) == len(line.cells) and len(values) == 1):
        return False
    figures = [c for c in values if is_figure(c.text)]
    numbers = [c for c in figures if not _CURRENCY_ONLY.match(c.text.strip())]
    if len(values) == len(line.cells) and all(_YEAR.match(c.text.strip()) for c in numbers):
        return False  # "2022   2021" with no label: the period heading of the columns
    return bool(numbers) and len(figures) == len(values)


def find_tables(lines: list[Line], page_width: float, deadline: float | None = None) -> list[Table]:
    """The tables among a page's lines, top to bottom. Past ``deadline`` (a
    ``time.monotonic()`` value) raises ``TableTimeout``."""
    tables: list[Table] = []
    i = 0
    while i < len(lines):
        if deadline is not None and time.monotonic() > deadline:
            raise TableTimeout(f"table detection ran past its time bound at line {i}")
        run = _figure_run(lines, i, page_width)
        if run is None:
            i += 1
            continue
        first, last = run
        table = _build(lines, first, last, page_width)
        if table is not None and (not tables or table.first_line > tables[-1].last_line):
            tables.append(table)
            i = table.last_line + 1
        else:
            i = last + 1
    return tables


def _label_limit(line: Line, page_width: float) -> float:
    """Where figures may start on ``line``: after its first cell when that cell is text."""
    first = line.cells[0]
    if is_figure(first.text) and first.x0 > page_width * 0.3:
        return first.x0  # no label: the line is all figures
    return first.x1 + 1


def _figure_run(lines: list[Line], start: int, page_width: float) -> tuple[int, int] | None:
    """The span of lines from ``start`` that holds at least two rows of figures, allowing
    label-only lines between them; None if ``start`` does not begin one."""
    line = lines[start]
    if not _is_data_row(line, _label_limit(line, page_width)):
        return None
    last = start
    data_rows = 1
    j = start + 1
    while j < len(lines):
        candidate = lines[j]
        height = max(candidate.size, 6.0)
        if candidate.top - lines[j - 1].bottom > _ROW_GAP_EM * height:
            break
        if _is_data_row(candidate, _label_limit(candidate, page_width)):
            data_rows += 1
            last = j
        elif not _could_be_row_label(candidate, lines[start], page_width):
            break
        j += 1
    return (start, last) if data_rows >= 2 else None


def _could_be_row_label(line: Line, first_row: Line, page_width: float) -> bool:
    """A label-only line inside a table ("Operating expenses:"): one short cell in the
    label column, not a paragraph running across the page."""
    if len(line.cells) != 1:
        return False
    cell = line.cells[0]
    return cell.x1 < first_row.cells[-1].x0 and len(cell.text) <= 120


def _build(lines: list[Line], first: int, last: int, page_width: float) -> Table | None:
    # A group label right above the first figures ("Net sales:") belongs to the table.
    while (
        first > 0
        and _could_be_row_label(lines[first - 1], lines[first], page_width)
        and lines[first - 1].cells[0].x1 < page_width * 0.45
        and lines[first].top - lines[first - 1].bottom < 1.5 * max(lines[first].size, 6.0)
        and lines[first - 1].text.rstrip().endswith(":")
    ):
        first -= 1
    body = lines[first : last + 1]
    columns = _columns(body, page_width)
    if not columns:
        return None
    rows: list[Row] = []
    for line in body:
        label_cells, values = _split(line, columns, page_width)
        label = " ".join(c.text for c in label_cells)
        if rows and not any(values) and not rows[-1].values and _continues(rows[-1].label, label):
            rows[-1].label += " " + label
            continue
        if rows and not label and any(values) and not any(rows[-1].values):
            rows[-1].values = values  # a wrapped label: the figures are on its second line
            continue
        if rows and label and label[0].islower() and not any(rows[-1].values):
            rows[-1].label += " " + label  # the figures sit on the wrapped label's last line
            rows[-1].values = values
            continue
        rows.append(Row(label=label, values=values))
    header_start, label_header, sections = _header(lines, first, columns, page_width)
    rows[:0] = [Row(label=text, values=[]) for text in reversed(sections)]
    return Table(
        first_line=header_start,
        last_line=last,
        columns=columns,
        label_header=label_header,
        rows=rows,
    )


def _continues(previous: str, label: str) -> bool:
    return bool(label) and not previous.endswith(":") and label[0].islower()


def _columns(body: list[Line], page_width: float) -> list[Column]:
    """Value columns from the right edges of the figures (they are right-aligned)."""
    edges: list[tuple[float, float]] = []
    for line in body:
        limit = _label_limit(line, page_width)
        for cell in line.cells:  # the figures' own extent, without their "$"
            text = cell.text.strip()
            if cell.x0 >= limit and is_figure(text) and not _CURRENCY_ONLY.match(text):
                edges.append((cell.x1, cell.x0))
    if not edges:
        return []
    edges.sort()
    tolerance = max(body[0].size, 6.0) * 1.2
    groups: list[list[tuple[float, float]]] = [[edges[0]]]
    for edge in edges[1:]:
        if edge[0] - groups[-1][-1][0] <= tolerance:
            groups[-1].append(edge)
        else:
            groups.append([edge])
    # A column needs figures on more than one row; a stray edge is a misaligned cell.
    needed = 2 if len(body) > 2 else 1
    return [
        Column(x0=min(x0 for _, x0 in g), x1=max(x1 for x1, _ in g))
        for g in groups
        if len(g) >= needed
    ]


def _merge_currency(cells: list[Cell]) -> list[Cell]:
    """A lone currency sign belongs to the figure to its right ("$   96,388")."""
    merged: list[Cell] = []
    pending: Cell | None = None
    for cell in cells:
        if _CURRENCY_ONLY.match(cell.text.strip()):
            pending = cell
            continue
        if pending is not None and is_figure(cell.text):
            cell = Cell(cell.text, pending.x0, cell.x1, cell.size, cell.bold)
        elif pending is not None:
            merged.append(pending)
        pending = None
        merged.append(cell)
    if pending is not None:
        merged.append(pending)
    return merged


def _nearest(columns: list[Column], cell: Cell) -> int:
    """The column a cell belongs to: the one it overlaps most, else the closest."""
    best, best_score = 0, float("-inf")
    for k, column in enumerate(columns):
        overlap = min(cell.x1, column.x1) - max(cell.x0, column.x0)
        score = overlap if overlap > 0 else -abs(cell.x1 - column.x1)
        if score > best_score:
            best, best_score = k, score
    return best


def _split(line: Line, columns: list[Column], page_width: float) -> tuple[list[Cell], list[str]]:
    """A line's label cells and its values, one per column ("" where it has none)."""
    values = [""] * len(columns)
    label: list[Cell] = []
    start = columns[0].x0 - max(line.size, 6.0) * 2
    for cell in _merge_currency(line.cells):
        text = cell.text.strip()
        if cell.x1 <= start or not (is_figure(text) or cell.x0 >= start):
            label.append(cell)
            continue
        k = _nearest(columns, cell)
        value = text.lstrip("$€£¥ ").strip()
        values[k] = f"{values[k]} {value}".strip() if values[k] else value
    if not any(values):
        return label, []
    return label, values


def _header(
    lines: list[Line], first: int, columns: list[Column], page_width: float
) -> tuple[int, str, list[str]]:
    """Header lines above the first row: each cell sits over value columns. Returns the
    index of the first header line, the label column's heading (if any) and the section
    lines passed over between header and rows; fills ``columns[k].header`` top-down."""
    start = first
    label_header = ""
    collected: list[tuple[list[Cell], list[Cell]]] = []
    sections: list[str] = []
    left_edge = columns[0].x0 - max(lines[first].size, 6.0) * 3
    for j in range(first - 1, max(first - 1 - _MAX_HEADER_LINES, -1), -1):
        line = lines[j]
        gap = lines[j + 1].top - line.bottom
        if gap > _HEADER_GAP_EM * max(line.size, 6.0):
            break
        over = [c for c in line.cells if c.x1 > left_edge]
        left = [c for c in line.cells if c.x1 <= left_edge]
        heading = (
            over
            and len(left) <= 1
            and not any(c.x0 < left_edge - 1 for c in over)
            and (not left or _periodish(over))
            # not a centred title or note above the table
            and all(_near_columns(c, columns) and _heading_like(c, columns) for c in over)
        )
        if not heading:
            if collected or sections or len(line.cells) != 1 or len(line.text.split()) > 5:
                break
            # A section line between the header and the rows ("ASSETS"): a row of its own.
            sections.append(line.text.strip())
            continue
        collected.append((left, over))
        start = j
    for left, over in reversed(collected):
        if left:
            label_header = " ".join([label_header, *(c.text for c in left)]).strip()
        for k, cell in _owners(columns, over).items():
            columns[k].header.append(cell.text.strip())
    _join_header_parts(columns)
    if not collected:
        return first, label_header, []
    return start, label_header, sections


def _near_columns(cell: Cell, columns: list[Column]) -> bool:
    slack = 2 * max(cell.size, 6.0)
    return any(cell.x1 >= c.x0 - slack and cell.x0 <= c.x1 + slack for c in columns)


def _heading_like(cell: Cell, columns: list[Column]) -> bool:
    """Not a note like "(unaudited)" centred above the table (under one column it is part
    of that column's heading), nor a statement's title in capitals."""
    text = cell.text.strip()
    if _periodish([cell]):
        return True
    if text.startswith("(") and text.endswith(")"):
        em = max(cell.size, 6.0)
        return any(c.x0 - 2 * em <= cell.centre <= c.x1 + em for c in columns)
    return not (text.isupper() and len(text.split()) >= 3)


def _periodish(cells: list[Cell]) -> bool:
    """Cells that name periods or dates ("2022", "Jul 1, 2023", "Three Months Ended")."""
    text = " ".join(c.text for c in cells)
    return bool(_MONTH.search(text) or any(_YEAR.match(c.text.strip()) for c in cells)) or (
        "ended" in text.lower()
    )


def _owners(columns: list[Column], cells: list[Cell]) -> dict[int, Cell]:
    """Each column's heading on one header line: the nearest cell, if it is near. A cell
    that several columns choose spans them ("Three Months Ended" over two periods)."""
    owners: dict[int, Cell] = {}
    for k, column in enumerate(columns):
        centre = (column.x0 + column.x1) / 2
        distance, cell = min(
            ((max(c.x0 - centre, centre - c.x1, 0.0), c) for c in cells), key=lambda t: t[0]
        )
        if distance <= 4 * max(cell.size, 6.0):
            owners[k] = cell
    return owners


def _join_header_parts(columns: list[Column]) -> None:
    """Join a column's stacked header lines into [span..., leaf]: lines shared with the
    neighbouring column are spans ("Three Months Ended"); the rest form its own heading
    ("December 31," + "2022" → "December 31, 2022")."""
    for k, column in enumerate(columns):
        shared: list[str] = []
        own: list[str] = []
        for part in column.header:
            neighbours = [columns[n].header for n in (k - 1, k + 1) if 0 <= n < len(columns)]
            if own or not any(part in h for h in neighbours) or _YEAR.match(part):
                own.append(part)
            else:
                shared.append(part)
        column.header = [*shared, " ".join(own)] if own else shared
