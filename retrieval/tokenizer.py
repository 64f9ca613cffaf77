"""The one BM25 tokenizer, used for documents and queries alike.

Everything is NFKC-normalised first, which also folds full-width letters, digits and
punctuation to their half-width forms (ＡＢＣ１２３ is abc123) and half-width katakana to
full-width. Latin-script (and any other space-delimited) text: Unicode case folding, words
of letters and digits, English stop words dropped, Snowball English stemming. Chinese,
Japanese and Korean runs have no spaces between words, so they become overlapping character
bigrams (a lone character stays a unigram): on CMRC2018 bigram BM25 reaches nDCG@10 0.98
without a segmenter dictionary. Han characters are first converted from Traditional to
Simplified (OpenCC's ``t2s``, phrases included), so that a question written in one finds a
document written in the other.

Changing what this module produces changes the terms of indexed chunks: bump
``TOKENIZER_VERSION`` and reindex (``ragkb reindex``).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import opencc
import Stemmer

# Version 2: Traditional Chinese folded to Simplified (indexes made before need a reindex).
TOKENIZER_VERSION = 2

# Han, Hiragana, Katakana, Hangul (syllables and jamo), CJK compatibility ideographs.
_CJK = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f\U00020000-\U0002ffff"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
# A word: letters/digits/marks, allowing inner apostrophes ("don't") and dots ("e.g").
_WORD = re.compile(rf"[^\W_{_CJK}]+(?:['’.][^\W_{_CJK}]+)*")
_TOKEN = re.compile(f"{_CJK_RUN.pattern}|{_WORD.pattern}")

# A compact English stop list (function words only; negations such as "not" and "no" are
# kept because they change the meaning of a claim).
_STOP_WORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself of off on once only or other our ours ourselves out over own same
she should so some such than that the their theirs them themselves then there these they this
those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_local = threading.local()
T = TypeVar("T")


def _per_thread(name: str, make: Callable[[], T]) -> T:
    """One ``make()`` per thread: PyStemmer objects are not safe to share between threads,
    and OpenCC's C++ converter is not documented as thread-safe; each is cheap (~1 ms)."""
    value: T | None = getattr(_local, name, None)
    if value is None:
        value = make()
        setattr(_local, name, value)
    return value


def _stemmer() -> Stemmer.Stemmer:
    return _per_thread("stemmer", lambda: Stemmer.Stemmer("english"))


def _t2s() -> opencc.OpenCC:
    return _per_thread("t2s", lambda: opencc.OpenCC("t2s"))


def tokenize(text: str) -> list[str]:
    """Terms of ``text`` in order (repeats kept: BM25 counts them)."""
    normalized = unicodedata.normalize("NFKC", text).casefold()
    terms: list[str] = []
    for match in _TOKEN.finditer(normalized):
        token = match.group()
        if _CJK_RUN.fullmatch(token):
            terms.extend(_bigrams(_t2s().convert(token)))
            continue
        token = token.replace("’", "").replace("'", "")
        if token and token not in STOP_WORDS:
            terms.append(_stem(token))
    return terms


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_stemmer().stemWord(word))


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]
