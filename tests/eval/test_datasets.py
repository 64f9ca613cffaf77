"""Eval data set loaders on tiny fixtures: BEIR, SQuAD (Chinese) and tenant question sets."""

from __future__ import annotations

import ast
import operator
import re
import shutil
import subprocess
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from core.errors import BadRequest
from eval.datasets import (
    load_beir,
    load_question_set,
    load_squad,
    matches,
    questions_from_records,
    questions_to_records,
    resolve,
)
from eval.figures import decimals, parse_gold
from tests.support.helpers import FIXTURE_DIR, REPO_ROOT, SHARED_DATA

FIXTURES = FIXTURE_DIR / "eval"
SEC_FIGURES = REPO_ROOT / "eval" / "questions" / "sec_figures.csv"
SEC_DOCS = SHARED_DATA / "sec-10-q" / "docs"


def test_beir_keeps_judged_queries_with_their_grades() -> None:
    data = load_beir(FIXTURES / "beir", "test")
    assert data.kind == "passages" and len(data.passages) == 6
    assert data.passages["d1"].title == "Vitamin D and bone density"
    assert [q.id for q in data.queries] == ["q1", "q2", "q3"]  # q9 has no judgement
    assert data.queries[2].relevant == {"d3": 1, "d5": 0}


def test_squad_paragraphs_become_passages_and_answers_are_kept() -> None:
    data = load_squad(FIXTURES / "squad_zh.json")
    assert list(data.passages) == ["P_0", "P_1", "P_2"]  # P_2: a distractor without questions
    assert len(data.queries) == 3
    first = data.queries[0]
    assert first.relevant == {"P_0": 1}
    assert first.answers == ["光荣和ω-force"]  # duplicates collapsed


def test_csv_question_set_with_globs_and_several_documents() -> None:
    queries = load_question_set((FIXTURES / "questions.csv").read_bytes(), "questions.csv")
    assert [q.expected for q in queries] == [["*orion*"], ["orion.md", "other.md"], []]
    assert queries[0].answers == ["14 March"] and queries[2].answers == []
    # A set without the answer-judging columns loads as before.
    assert all(q.figure is None and q.pages == [] and q.kind is None for q in queries)
    assert all(q.answerable for q in queries)
    assert matches(queries[0].expected, "id-1", "Orion-Plan.pdf")
    assert not matches(queries[0].expected, "id-1", "pelican.md")


def test_jsonl_question_set_and_records_round_trip() -> None:
    queries = load_question_set((FIXTURES / "questions.jsonl").read_bytes(), "q.jsonl")
    assert queries[0].expected == ["orion.md"] and queries[1].expected == ["hq-*.pdf"]
    assert questions_from_records(questions_to_records(queries)) == queries


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"question,answer\n,x\n", "q.csv", "line 2: no question"),
        (b'{"question": "ok"}\nnot json\n', "q.jsonl", "line 2: not JSON"),
        (b"question\n", "q.csv", "no questions"),
        (b"question,figure\nq,about five\n", "q.csv", "line 2: the figure 'about five'"),
        (b"question,pages\nq,4|x\n", "q.csv", "line 2: pages must be page numbers"),
        (b"question,pages\nq,0\n", "q.csv", "line 2: pages must be page numbers"),
        (b'{"question": "q", "kind": "trivia"}\n', "q.jsonl", "line 1: kind 'trivia'"),
    ],
)
def test_a_bad_question_set_says_which_line(content: bytes, name: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        load_question_set(content, name)


def test_resolve_paths_and_names(tmp_path: Path) -> None:
    assert resolve(str(FIXTURES / "beir")).kind == "passages"
    assert resolve(str(FIXTURES / "squad_zh.json")).name == "squad_zh"
    assert resolve(str(FIXTURES / "questions.csv")).kind == "tenant"
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve("scifact", tmp_path)
    if (SHARED_DATA / "sec-10-q").is_dir():
        sec = resolve("sec-10q", SHARED_DATA)
        assert sec.kind == "files" and sec.docs_dir is not None
        assert all(q.expected for q in sec.queries)


def test_figure_pages_and_kind_columns_and_their_records() -> None:
    content = (
        b"question,expected_documents,answer,figure,pages,kind\n"
        b'Net sales?,2023 Q1 AAPL.pdf,"$117,154 million","117,154",4|10-11,Lookup\n'
        b"Tesla revenue?,,,,,unanswerable\n"
    )
    first, second = load_question_set(content, "figures.csv")
    assert (first.figure, first.pages, first.kind) == ("117,154", [4, 10, 11], "lookup")
    assert first.expected == ["2023 Q1 AAPL.pdf"] and first.answerable
    assert (second.figure, second.pages, second.kind, second.expected) == (
        None,
        [],
        "unanswerable",
        [],
    )
    assert not second.answerable
    assert questions_from_records(questions_to_records([first, second])) == [first, second]
    jsonl = b'{"question": "q", "figure": -5.5, "pages": [3, 4], "kind": "derived"}\n'
    (derived,) = load_question_set(jsonl, "q.jsonl")
    assert (derived.figure, derived.pages, derived.kind) == ("-5.5", [3, 4], "derived")


def test_sec_figures_question_set() -> None:
    """The committed set: its kinds, counts and columns, over the 20 filings."""
    queries = load_question_set(SEC_FIGURES.read_bytes(), SEC_FIGURES.name)
    kinds = Counter(q.kind for q in queries)
    assert kinds["lookup"] >= 30 and kinds["derived"] >= 12 and kinds["unanswerable"] >= 20
    assert sum(kinds.values()) == len(queries) and len({q.id for q in queries}) == len(queries)
    filings = set()
    for q in queries:
        if q.kind == "unanswerable":
            assert not q.expected and q.figure is None and not q.pages
            continue
        assert len(q.expected) == 1 and q.figure is not None and q.pages and q.answers
        assert re.fullmatch(r"20(22 Q3|23 Q[123]) (AAPL|AMZN|INTC|MSFT|NVDA)\.pdf", q.expected[0])
        filings.add(q.expected[0])
    lookups = {q.expected[0] for q in queries if q.kind == "lookup"}
    assert {f[8:12] for f in lookups} == {"AAPL", "AMZN", "INTC", "MSFT", "NVDA"}
    assert {f[:7] for f in lookups} == {"2022 Q3", "2023 Q1", "2023 Q2", "2023 Q3"}
    assert len(filings) == 20


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _formula(node: ast.AST) -> Decimal:
    """An operand formula of the set ("(117154 - 123945) / 123945 * 100") in Decimals."""
    if isinstance(node, ast.Expression):
        return _formula(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Decimal(str(node.value))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _formula(node.left) / _formula(node.right)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        result: Decimal = _OPERATORS[type(node.op)](_formula(node.left), _formula(node.right))
        return result
    raise ValueError(f"unexpected formula part {ast.dump(node)}")


@pytest.mark.skipif(
    not SEC_DOCS.is_dir() or shutil.which("pdftotext") is None,
    reason="needs ../shared/data/sec-10-q/docs and pdftotext (poppler)",
)
def test_sec_figures_gold_figures_are_printed_in_the_filings() -> None:
    """Provenance, re-checked with pdftotext: a look-up's figure is printed (as the filing
    prints it: 117,154 / 1.26) on every page listed; a derived figure's operands are printed
    on one listed page, and its formula rounds to the figure."""
    import csv

    rows = list(csv.DictReader(SEC_FIGURES.open(encoding="utf-8")))
    texts: dict[str, list[str]] = {}
    for row in rows:
        if row["kind"] == "unanswerable":
            continue
        name = row["expected_documents"]
        if name not in texts:
            done = subprocess.run(
                ["pdftotext", "-layout", str(SEC_DOCS / name), "-"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            texts[name] = done.stdout.split("\f")
        pages = [texts[name][int(p) - 1] for p in row["pages"].split("|")]
        gold = abs(parse_gold(row["figure"]))
        if row["kind"] == "lookup":
            printed = f"{gold:,}" if decimals(row["figure"]) == 0 else str(gold)
            pattern = re.compile(rf"(?<![\d,.]){re.escape(printed)}(?![\d]|,\d)")
            missing = [
                p
                for p, text in zip(row["pages"].split("|"), pages, strict=True)
                if not pattern.search(text)
            ]
            assert not missing, f"{row['id']}: {printed} not on page(s) {missing} of {name}"
        else:
            value = _formula(ast.parse(row["formula"].replace(",", ""), mode="eval"))
            step = Decimal(1).scaleb(-decimals(row["figure"]))
            assert value.quantize(step, ROUND_HALF_UP) == parse_gold(row["figure"]), row["id"]
            operands = re.findall(r"\d[\d,]*", row["formula"].replace(" * 100", ""))
            assert any(all(o in text for o in operands) for text in pages), row["id"]


def test_sec_figures_resolves_to_the_shared_filings(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="documents of data set 'sec-figures'"):
        resolve("sec-figures", tmp_path)
    if SEC_DOCS.is_dir():
        data = resolve("sec-figures", SHARED_DATA)
        assert data.kind == "files" and data.docs_dir == SEC_DOCS
        # The same throw-away tenant as sec-10q: the filings are ingested once.
        assert data.corpus_name == resolve("sec-10q", SHARED_DATA).corpus_name == "sec-10-q"
