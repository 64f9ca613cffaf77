"""Refusal: when retrieval found nothing relevant enough, say so without calling the LLM.

Relevance is judged on the most precise calibrated score the search produced: a
cross-encoder's sigmoid score when one reranked, else the dense cosine similarity. Fused
(RRF), BM25 and score-fusion rerank scores are rank-, length- or min-max-dependent and
say nothing absolute about relevance, so they never refuse on their own: without a
calibrated score only an empty result refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from generation.prompts import NO_ANSWER_SENTENCE
from generation.sources import Source
from generation.text import is_cjk

_NO_ANSWER_ZH = "知识库中没有这个问题的答案。"
_CLOSEST_DOCUMENTS = 3


@dataclass(frozen=True, slots=True)
class Thresholds:
    rerank: float
    dense: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            rerank=settings.answer.refusal_min_rerank_score,
            dense=settings.answer.refusal_min_dense_score,
        )


def is_relevant(source: Source, thresholds: Thresholds, rerank_calibrated: bool = False) -> bool:
    if rerank_calibrated and "rerank" in source.scores:
        return source.scores["rerank"] >= thresholds.rerank
    if "dense" in source.scores:
        return source.scores["dense"] >= thresholds.dense
    return True


def relevant_sources(
    sources: list[Source], thresholds: Thresholds, rerank_calibrated: bool = False
) -> list[Source]:
    """The sources worth answering from, in their rank order. ``rerank_calibrated``: the
    ``rerank`` scores come from a cross-encoder (0..1), not from a rank-relative fusion."""
    return [s for s in sources if is_relevant(s, thresholds, rerank_calibrated)]


def closest_documents(sources: list[Source], limit: int = _CLOSEST_DOCUMENTS) -> list[Source]:
    """The best-ranked passage of each of the first few distinct documents."""
    seen: dict[str, Source] = {}
    for source in sources:
        seen.setdefault(source.document_id, source)
        if len(seen) == limit:
            break
    return list(seen.values())


def refusal_text(question: str, closest: list[Source]) -> str:
    """The plain no-answer sentence in the question's script, naming the nearest documents."""
    if is_cjk(question):
        text = _NO_ANSWER_ZH
        if closest:
            text += "最接近的文档：" + "；".join(s.describe() for s in closest) + "。"
        return text
    text = NO_ANSWER_SENTENCE
    if closest:
        text += " The closest documents were: " + "; ".join(s.describe() for s in closest) + "."
    return text


def is_model_refusal(answer: str) -> bool:
    """The model said the sentence the prompt asks for when the sources do not answer."""
    normalized = " ".join(answer.lower().split())
    return NO_ANSWER_SENTENCE.lower().rstrip(".") in normalized or _NO_ANSWER_ZH[:-1] in answer
