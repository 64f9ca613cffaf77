"""Sentence splitting and lexical matching shared by the prompt, the citation quotes and
the embedded generator.

Plain regular expressions on purpose: they run on every answer, must not load a model,
and must treat English and CJK text alike (CJK sentences end without a space).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

import opencc

# A sentence ends at . ! ? (followed by space/end) or at CJK 。！？； (no space needed).
# A closing quote or bracket after the mark stays with its sentence.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+|(?:(?<=[。！？；])|(?<=[。！？；][”」』）]))(?![”」』）])\s*|\n\s*\n"
)
_ABBREVIATION_LIST = "e.g i.e etc inc corp ltd co no vs mr mrs ms dr jr sr st u.s fig approx est"
_ABBREVIATIONS = frozenset(_ABBREVIATION_LIST.split())
_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
# Question words and glue that say nothing about which sentence answers.
_STOPWORD_LIST = """
    a an and are as at be been being but by can could did do does for from had has have
    how i if in into is it its itself me more most my of on or our over s so such than that
    the their them then there these they this those through to under up was we were what
    when where which while who whom why will with would you your any all also about
    between across list out describe explain tell give show compare compared"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())
_local = threading.local()


def _t2s() -> opencc.OpenCC:
    converter: opencc.OpenCC | None = getattr(_local, "t2s", None)
    if converter is None:  # one per thread (not documented as thread-safe), ~1 ms to make
        converter = opencc.OpenCC("t2s")
        _local.t2s = converter
    return converter


def split_sentences(text: str) -> list[str]:
    """Split into sentences, keeping abbreviations ("Inc.", "e.g.") and decimals whole."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start()]
        last_word = candidate.rstrip(".!?\"')] ").rsplit(None, 1)[-1:] or [""]
        word = last_word[0].lower().rstrip(".")
        if (
            match.group(0).strip() == ""
            and "\n" not in match.group(0)
            and (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))
        ):
            continue  # "Inc. and" or "J. Smith": not the end of a sentence
        pieces.append(candidate)
        start = match.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def stem(word: str) -> str:
    """A deliberately light English stemmer: plural and -ing/-ed forms meet their root."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: len(word) - len(suffix)] + keep
            break
    # "change", "changed", "changes" all end up as "chang".
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def terms(text: str) -> list[str]:
    """Content terms: lowercased, stemmed words without stopwords; CJK as characters,
    Traditional folded to Simplified (a Simplified question matches a Traditional source)."""
    out: list[str] = []
    for token in _WORD.findall(text.lower()):
        if _CJK.search(token):
            out.extend(ch for ch in _t2s().convert(token) if not ch.isspace())
        elif token not in STOPWORDS and (len(token) > 1 or token.isdigit()):
            out.append(stem(token))
    return out


def idf_weights(documents: Iterable[AbstractSet[str]]) -> dict[str, float]:
    """Smoothed inverse document frequency over a small set of candidate sentences."""
    docs = list(documents)
    counts: dict[str, int] = {}
    for doc in docs:
        for term in doc:
            counts[term] = counts.get(term, 0) + 1
    n = len(docs)
    return {t: math.log(1.0 + (n - c + 0.5) / (c + 0.5)) for t, c in counts.items()}


def overlap_score(
    query_terms: AbstractSet[str], candidate_terms: AbstractSet[str], idf: dict[str, float]
) -> float:
    """IDF-weighted share of the query terms the candidate contains (0..1)."""
    if not query_terms:
        return 0.0
    total = sum(idf.get(t, 1.0) for t in query_terms)
    hit = sum(idf.get(t, 1.0) for t in query_terms & candidate_terms)
    return hit / total if total else 0.0


_NAME = re.compile(r"(?<![\w'’])([A-Z][\w&-]*)")


def question_entities(question: str) -> set[str]:
    """Content terms of the names a question mentions: capitalised words that do not
    start a sentence ("Apple", "Intel", "AWS", "Lyon"), as :func:`terms` spells them."""
    names = [
        match.group(1)
        for sentence in split_sentences(question)
        for match in _NAME.finditer(sentence)
        if match.start() > 0  # a sentence's first word is capitalised anyway
    ]
    return set(terms(" ".join(names)))


def is_cjk(text: str) -> bool:
    """True when the text is mostly CJK (used to answer refusals in the question's script)."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and sum(1 for ch in letters if _CJK.match(ch)) * 2 >= len(letters)
