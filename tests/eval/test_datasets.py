"""Eval data set loaders on tiny fixtures: BEIR, SQuAD (Chinese) and tenant question sets."""

from __future__ import annotations

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
from tests.support.helpers import FIXTURE_DIR, SHARED_DATA

FIXTURES = FIXTURE_DIR / "eval"


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
