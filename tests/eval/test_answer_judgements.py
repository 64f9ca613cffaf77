"""Figure stated, first citation (document and page) and refusal metrics on hand-made
answers (no run): what ``eval run --answers`` reports for question sets with ``figure``,
``pages`` and ``kind`` columns."""

from __future__ import annotations

from typing import Any

import pytest

from core.passages import Passage
from core.tenancy import TenantScope
from eval.corpus import Corpus
from eval.datasets import EvalQuery
from eval.report import markdown
from eval.runner import answer_judgements, first_citation, judge_answer
from generation.answer import AnswerResult
from generation.citations import MARKER, Citation

CORPUS = Corpus(
    scope=TenantScope("tenant-1", "eval-sec-10-q"),
    name_of={"doc-q1": "2023 Q1 AAPL.pdf", "doc-q2": "2023 Q2 AAPL.pdf"},
)


def _citation(n: int, document_id: str, page_start: int | None, page_end: int | None) -> Citation:
    passage = Passage(
        chunk_id=f"chunk-{n}",
        document_id=document_id,
        filename=CORPUS.name_of[document_id],
        text="Total net sales 117,154 123,945",
        page_start=page_start,
        page_end=page_end,
    )
    return Citation(n, passage, quote=passage.text)


def _result(answer: str, citations: list[Citation], *, refused: bool = False) -> AnswerResult:
    return AnswerResult(
        answer=answer,
        citations=citations,
        refused=refused,
        invalid_citations=0,
        uncited=not citations,
        generator="hand-made",
        prompt_version=None,
    )


LOOKUP = EvalQuery(
    "q1",
    "What were Apple's total net sales for the quarter ended December 31, 2022?",
    expected=["2023 Q1 AAPL.pdf"],
    figure="117154",
    pages=[4, 10],
    kind="lookup",
)
DERIVED = EvalQuery(
    "q2", "Change in net sales?", expected=["2023 Q1 AAPL.pdf"], figure="-5.5", pages=[4],
    kind="derived",
)  # fmt: skip
UNANSWERABLE = EvalQuery("q3", "What was Tesla's revenue?", kind="unanswerable")


def _judge(q: EvalQuery, result: AnswerResult) -> dict[str, Any]:
    relevant = ["doc-q1"] if q.answerable else []
    plain = MARKER.sub("", result.answer)
    return {
        "kind": q.kind,
        "refused": result.refused,
        **judge_answer(q, result, plain, relevant, CORPUS),
    }


def test_first_citation_is_the_first_marker_in_the_text() -> None:
    early, late = _citation(1, "doc-q2", 3, 3), _citation(2, "doc-q1", 4, 5)
    # Citations in another order than the text's markers: the text decides.
    result = _result("Total net sales: $117,154 million [2]. Earlier [1].", [early, late])
    assert first_citation(result) is late
    assert first_citation(_result("No markers left.", [early, late])) is early
    assert first_citation(_result("Nothing cited.", [])) is None


def test_a_right_answer_states_its_figure_on_the_right_page() -> None:
    result = _result(
        "Total net sales for the three months ended December 31, 2022: $117,154 million [1].",
        [_citation(1, "doc-q1", 3, 4)],
    )
    judged = _judge(LOOKUP, result)
    assert judged["figure_stated"] is True
    assert judged["first_citation_document"] is True and judged["first_citation_page"] is True
    assert judged["first_citation"] == {
        "document": "2023 Q1 AAPL.pdf", "page_start": 3, "page_end": 4,
    }  # fmt: skip


def test_wrong_page_wrong_filing_and_refusals() -> None:
    wrong_page = _judge(LOOKUP, _result("$117,154 million [1]", [_citation(1, "doc-q1", 5, 6)]))
    assert wrong_page["first_citation_document"] is True
    assert wrong_page["first_citation_page"] is False
    # The same page number in another filing is not the right page.
    wrong_filing = _judge(LOOKUP, _result("$94,836 million [1]", [_citation(1, "doc-q2", 4, 4)]))
    assert wrong_filing["figure_stated"] is False
    assert (wrong_filing["first_citation_document"], wrong_filing["first_citation_page"]) == (
        False, False,
    )  # fmt: skip
    no_pages = _judge(LOOKUP, _result("$117,154 million [1]", [_citation(1, "doc-q1", None, None)]))
    assert no_pages["first_citation_page"] is False
    refused = _judge(LOOKUP, _result("I cannot answer from 117154 [1].", [], refused=True))
    assert refused["figure_stated"] is False and refused["first_citation_document"] is False
    unanswerable = _judge(UNANSWERABLE, _result("Sales were 5 [1]", [_citation(1, "doc-q1", 4, 4)]))
    assert unanswerable["figure_stated"] is None
    assert (
        unanswerable["first_citation_document"] is None
        and unanswerable["first_citation_page"] is None
    )


def test_the_metrics_over_a_hand_made_run() -> None:
    right = _result("Total net sales: $117,154 million [1].", [_citation(1, "doc-q1", 4, 4)])
    rows = [
        _judge(LOOKUP, right),
        _judge(
            LOOKUP, _result("Net sales were $117.2 billion [1].", [_citation(1, "doc-q1", 9, 9)])
        ),
        _judge(DERIVED, _result("Net sales fell 5.48% [1].", [_citation(1, "doc-q1", 4, 4)])),
        _judge(DERIVED, _result("Cannot answer.", [], refused=True)),
        _judge(UNANSWERABLE, _result("Cannot answer.", [], refused=True)),
        _judge(UNANSWERABLE, _result("Revenue was 5 [1].", [_citation(1, "doc-q2", 1, 1)])),
    ]
    metrics = answer_judgements(rows)
    assert metrics["answerable"] == 4 and metrics["unanswerable"] == 2
    assert metrics["figure_stated"] == pytest.approx(2 / 4)
    assert metrics["figure_stated_lookup"] == pytest.approx(1 / 2)
    assert metrics["figure_stated_derived"] == pytest.approx(1 / 2)
    assert metrics["first_citation_document"] == pytest.approx(3 / 4)
    assert metrics["first_citation_page"] == pytest.approx(2 / 4)
    assert metrics["refusal_recall"] == pytest.approx(1 / 2)
    assert metrics["false_refusal_rate"] == pytest.approx(1 / 4)
    assert metrics["refusal_precision"] == pytest.approx(1 / 2)

    # The report shows them, with the answers that missed their figure.
    items = [
        {"question": f"question {i}", "answer": "a", "cited": [], **r} for i, r in enumerate(rows)
    ]
    answers = {
        "questions": 6, "refusal_rate": 2 / 6, "citation_precision": 1.0, "citation_recall": 1.0,
        "token_f1": None, "exact_match": None, "groundedness": 1.0, "generator": "hand-made",
        "groundedness_judge": "lexical", "latency_ms": {}, "items": items, **metrics,
    }  # fmt: skip
    page = markdown({"dataset": "sec-figures", "answers": answers}, [])
    assert "| figure stated | look-ups | derived | 1st citation: document |" in page
    assert "| 0.500 | 0.500 | 0.500 | 0.750 | 0.500 | 0.500 | 0.500 | 0.250 |" in page
    assert "Answers not stating their figure (2)" in page
    assert "Unanswerable questions answered (1)" in page


def test_a_set_without_figures_or_kinds_reports_no_judgements() -> None:
    plain = EvalQuery("q", "Who?", expected=["2023 Q1 AAPL.pdf"])
    rows = [_judge(plain, _result("Apple [1].", [_citation(1, "doc-q1", 2, 2)]))]
    metrics = answer_judgements(rows)
    assert metrics["figure_stated"] is None and metrics["first_citation_page"] is None
    assert metrics["first_citation_document"] == 1.0
    assert metrics["refusal_recall"] is None and metrics["false_refusal_rate"] == 0.0
    assert metrics["refusal_precision"] is None
