"""Refusal: when retrieval found nothing relevant enough, say so without calling the LLM.

Relevance is judged on the most precise calibrated score the search produced: a
cross-encoder's sigmoid score when one reranked, else the dense cosine similarity. Fused
(RRF), BM25 and score-fusion rerank scores are rank-, length- or min-max-dependent and
say nothing absolute about relevance, so they never refuse on their own: without a
calibrated score only an empty result refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.document_facts import organisation_aliases, parse_periods
from core.settings import Settings
from generation.prompts import NO_ANSWER_SENTENCE
from generation.sources import Source
from generation.text import STOPWORDS, is_cjk, question_entities, terms

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


# Capitalised words of questions that name no organisation: periods, forms, finance terms.
_NOT_NAMES = frozenset(
    terms(
        "q1 q2 q3 q4 fy form 10-q 10-k 8-k gaap non-gaap usd eps r&d sg&a ceo cfo january "
        "february march april may june july august september october november december "
        "quarter fiscal company what how which when who why"
    )
)


# The company a question is about: "Tesla's revenue", "Samsung Electronics' profit".
_POSSESSIVE = re.compile(r"\b([A-Z][\w&.-]*(?:\s+[A-Z][\w&.-]*)*)(?:'s|’s|'|’)(?=\s)")


def unsupported(question: str, sources: list[Source]) -> str | None:
    """Why no source can answer ``question``, judged on what the sources' documents are
    about (``Source.organisations`` and ``period``) and their text; None when some can.

    - The question names something (a capitalised name: "Tesla") that no source's text,
      title or organisation mentions, while naming nothing that one does (judged only
      when the sources' documents have known organisations).
    - Its subject, a name in the possessive ("Samsung Electronics' profit"), is none of
      the sources' organisations and appears in none of their text.
    - It names a quarter ("Q4 2021") and the sources come from documents with periods,
      none of them that quarter; or a day or a year after the newest period they cover.
    """
    if not sources:
        return None
    names = question_entities(question) - _NOT_NAMES
    names = {n for n in names if not n.isdigit()}
    # Only documents whose organisations are known can be said not to be about a name.
    if names and any(s.organisations for s in sources):
        known: set[str] = set()
        for source in sources:
            known |= set(terms(source.text))
            known |= set(terms(source.document_title or ""))
            for organisation in source.organisations:
                for alias in organisation_aliases(organisation):
                    known |= set(terms(alias))
        if not names & known:
            return f"no source mentions {', '.join(sorted(names))}"
    subject = _POSSESSIVE.search(question)
    words = subject.group(1).split() if subject else []
    while words and words[0].lower() in STOPWORDS:
        words = words[1:]  # "In Apple's": the sentence's first word is no part of the name
    if words and any(s.organisations for s in sources):
        name = " ".join(words).lower()
        aliases = {a for s in sources for o in s.organisations for a in organisation_aliases(o)}
        texts = " ".join(s.text.lower() for s in sources)
        if name not in aliases and name not in texts:
            return f"no source is about {' '.join(words)}"
    mentions = parse_periods(question)
    quarters = {m.label for m in mentions if m.kind == "quarter"}
    periods = {s.period for s in sources if s.period}
    # A day the question names that ends a source's period settles it, whatever the
    # quarter is called ("Q3 fiscal 2024 (three months ended October 29, 2023)").
    days = {m.label for m in mentions if m.kind == "day"}
    settled = bool(days & {s.period_end for s in sources if s.period_end})
    if quarters and periods and not quarters & periods and not settled:
        return f"no source covers {', '.join(sorted(quarters))}"
    ends = [s.period_end for s in sources if s.period_end]
    if ends:
        # A day or a year after the newest period any source covers: not in them.
        newest = max(ends)
        later = [m.label for m in mentions if m.kind == "day" and m.label > newest]
        later += [m.label for m in mentions if m.kind == "year" and m.label > newest[:4]]
        if later:
            return f"no source covers {', '.join(later)} (the newest period ends {newest})"
    return None


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
