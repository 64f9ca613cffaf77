"""The embedded generator's answer to a question that asks for a figure: the figure first,
with its unit, scale and period and its [n], then the row that supports it; a change
between two periods or a ratio of two rows computed from the cited rows, with the
formula. None when no table row names what is asked (the caller then quotes sentences).
"""

from __future__ import annotations

from generation.figures import (
    Figure,
    Row,
    Table,
    asks_for_figure,
    best_rows,
    choose_column,
    comparison_column,
    figure_of,
    format_amount,
    is_change_question,
    parse_tables,
    percent,
    ratio_parts,
    same_period,
)
from generation.prompts import Prompt

# A row must name most of what it is (its label's terms) in the question's words.
MIN_ROW_SCORE = 0.8


def figure_answer(prompt: Prompt, numbers: list[int]) -> str | None:
    """The answer, or None. ``numbers``: the sources worth reading, best first."""
    question = prompt.question
    if not asks_for_figure(question):
        return None
    tables = [(n, t) for n in numbers for t in parse_tables(prompt.sources[n - 1].text)]
    if not tables:
        return None
    parts = ratio_parts(question)
    if parts is not None:
        documents = {n: prompt.sources[n - 1].document_id for n in numbers}
        ratio = _ratio(tables, question, parts, documents)
        if ratio is not None:
            return ratio
    change_asked = is_change_question(question)
    for score, n, table, row in best_rows(tables, question)[:5]:
        if score < MIN_ROW_SCORE:
            break
        column = choose_column(table, question)
        figure = figure_of(table, row, column)
        if figure is None:
            continue
        if change_asked:
            if figure.unit == "%":
                continue  # a change of shares of revenue is not the change asked for
            change = _change(table, row, column, figure, n)
            if change is not None:
                return change
        amount = format_amount(figure.value, figure.unit)
        return f"{_name(figure)}: {amount} [{n}]. {_support(row, n)}"
    return None


def _period(column: str) -> str:
    """ "Three Months Ended December 31, 2022" → "the three months ended December 31,
    2022"; a balance-sheet date "September 30, 2023" → "September 30, 2023"."""
    if not column:
        return ""
    words = column.split(" ")
    if words[0].lower() in ("three", "six", "nine", "twelve"):
        # "Three Months Ended" → "the three months ended"; the date keeps its capitals.
        return "the " + " ".join(w.lower() if i < 3 else w for i, w in enumerate(words))
    return column


def _label(row: Row) -> str:
    """ "Diluted" under "Earnings per share" → "Earnings per share, diluted"."""
    if row.section and len(row.label.split()) == 1:
        return f"{row.section}, {row.label[0].lower()}{row.label[1:]}"
    return row.label


def _name(figure: Figure) -> str:
    when = _period(figure.column)
    label = _label(figure.row)
    if when.startswith("the "):
        return f"{label} for {when}"
    return f"{label} at {when}" if when else label


def _support(row: Row, n: int) -> str:
    return f"The statement reads: {row.line} [{n}]."


def _change(table: Table, row: Row, column: int, figure: Figure, n: int) -> str | None:
    other = comparison_column(table, column)
    before = figure_of(table, row, other) if other is not None else None
    if before is None or before.value == 0:
        return None
    difference = figure.value - before.value
    share = percent(difference, abs(before.value))
    sign = "+" if difference > 0 else ""
    return (
        f"{_label(row)} changed by {format_amount(difference, figure.unit)} ({sign}{share}%): "
        f"{format_amount(figure.value, figure.unit)} for {_period(figure.column) or 'the period'}"
        f" against {format_amount(before.value, before.unit)} for "
        f"{_period(before.column) or 'the prior period'} [{n}]. Computed as "
        f"({figure.printed} − {before.printed}) / {before.printed}. {_support(row, n)}"
    )


def _printed_percentages(table: Table) -> bool:
    return any("%" in v for row in table.rows[:3] for v in row.values)


def _ratio(
    tables: list[tuple[int, Table]],
    question: str,
    parts: tuple[str, str],
    documents: dict[int, str],
) -> str | None:
    tables = [(n, t) for n, t in tables if not _printed_percentages(t)]
    numerators = best_rows(tables, parts[0])
    if not numerators or numerators[0][0] < MIN_ROW_SCORE:
        return None
    _, n, table, top = numerators[0]
    column = choose_column(table, question)
    a = figure_of(table, top, column)
    if a is None:
        return None
    # The denominator from the same table (both operands of one period of one statement),
    # else from another table of the same document with a column of the same period.
    same_document = [
        (m, other) for m, other in tables if other is not table and documents[m] == documents[n]
    ]
    b: Figure | None = None
    bottom: Row | None = None
    n_bottom = n
    for candidates in ([(n, table)], same_document):
        for score, m2, other, row in best_rows(candidates, parts[1], exclude=top.label):
            if score < MIN_ROW_SCORE * 0.5:
                break
            col = (
                column
                if other is table
                else next(
                    (i for i, c in enumerate(other.columns) if same_period(c, a.column)), None
                )
            )
            found = figure_of(other, row, col) if col is not None else None
            if found is not None and found.value != 0:
                b, bottom, n_bottom = found, row, m2
                break
        if b is not None:
            break
    if b is None or bottom is None:
        return None
    ratio = percent(a.value, b.value)
    when = _period(a.column)
    cited = f"[{n}]" if n_bottom == n else f"[{n}, {n_bottom}]"
    return (
        f"{_label(top)} was {ratio}% of {_label(bottom).lower()}"
        + (f" for {when}" if when.startswith("the ") else (f" at {when}" if when else ""))
        + f" {cited}. Computed as {a.printed} / {b.printed} "
        f"({format_amount(a.value, a.unit)} / {format_amount(b.value, b.unit)}). "
        f"{_support(top, n)} {_support(bottom, n_bottom)}"
    )
