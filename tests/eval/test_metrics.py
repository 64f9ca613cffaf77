"""Eval metrics: ir-measures checked against values computed by hand on a toy run, and the
answer metrics (token F1 / exact match with CJK tokenisation, citations, latency)."""

from __future__ import annotations

import math

import pytest

from eval.metrics import (
    answer_tokens,
    citation_precision_recall,
    exact_match,
    per_query,
    percentiles,
    ranking_scores,
    retrieval_metrics,
    token_f1,
)

QRELS = {"q1": {"a": 1, "c": 1}, "q2": {"x": 2, "y": 1}, "q3": {"z": 1}}
RUN = {
    "q1": ranking_scores(["b", "a", "d", "c"]),  # relevant at ranks 2 and 4
    "q2": ranking_scores(["y", "x"]),  # grades 1 then 2
    # q3 has no results at all: it must count as zero, not be skipped.
}


def test_ir_measures_agree_with_hand_computed_values() -> None:
    got = retrieval_metrics(QRELS, RUN)
    # nDCG@10 (trec_eval: gain = grade, discount log2(rank + 1)).
    q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    q2 = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx((q1 + q2 + 0) / 3, abs=1e-4)
    # MRR@10: 1/2, 1, 0.
    assert got["mrr@10"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-4)
    # AP: q1 (1/2 + 2/4) / 2 = 0.5; q2 (1 + 1) / 2 = 1; q3 0.
    assert got["map@100"] == pytest.approx(0.5, abs=1e-4)
    assert got["recall@1"] == pytest.approx((0 + 0.5 + 0) / 3, abs=1e-4)
    assert got["recall@100"] == pytest.approx(2 / 3, abs=1e-4)
    per = per_query(QRELS, RUN)
    assert per["q3"] == 0.0 and per["q1"] == pytest.approx(q1, abs=1e-4)


def test_answer_tokens_split_cjk_per_character_and_normalise_english() -> None:
    assert answer_tokens("The Cat, sat!") == ["cat", "sat"]
    assert answer_tokens("光荣和ω-force") == ["光", "荣", "和", "ω", "force"]
    assert answer_tokens("约6300公里。") == ["约", "6300", "公", "里"]


def test_exact_match_and_token_f1_in_english_and_chinese() -> None:
    assert exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    assert token_f1("Eiffel", ["Eiffel tower"]) == pytest.approx(2 / 3)
    # Best over the gold answers; Chinese by character: 3 of 4 predicted, 3 of 3 gold.
    assert token_f1("长江大约", ["6300公里", "长江大"]) == pytest.approx(2 * 0.75 * 1 / 1.75)
    assert exact_match("光荣和ω-force", ["光荣和ω-force"]) == 1.0
    assert token_f1("anything", []) == 0.0


def test_citation_precision_recall_and_percentiles() -> None:
    assert citation_precision_recall(["a", "b", "a"], ["a", "c"]) == (0.5, 0.5)
    assert citation_precision_recall([], ["a"]) == (None, 0.0)
    assert citation_precision_recall(["a"], []) == (0.0, None)
    stats = percentiles([float(v) for v in range(1, 101)])
    assert stats["p50"] == pytest.approx(50.5) and stats["p95"] == pytest.approx(95.05)
