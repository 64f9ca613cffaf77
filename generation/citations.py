"""Citation markers: parse [n], [n, m] and [n-m] (also token by token while streaming),
drop the ones that point to no source, and turn the rest into citations with a quote. A
:class:`Citation` points to the cited passage (``core.passages.Passage``).

The stream filter's output *is* the answer: the streamed tokens, the stored answer and
the citations are all computed from the same cleaned text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.passages import Passage
from generation.prompts import Prompt
from generation.text import idf_weights, overlap_score, split_sentences, terms

MARKER = re.compile(r"\[(\s*\d{1,4}(?:\s*(?:[,;]|[-–])\s*\d{1,4})*\s*)\]")
_LEADING_MARKERS = re.compile(rf"^(?:\s*{MARKER.pattern})+")
_MARKER_CHARS = frozenset("0123456789 ,;-–")
_MAX_MARKER_LEN = 40
_RANGE_CAP = 50  # "[1-9999]" must not explode into thousands of citations
_CLOSING_PUNCTUATION = frozenset(".,;:!?。，；：！？)")


@dataclass(frozen=True, slots=True)
class Citation:
    """[n] in an answer: the passage it cites and the sentence(s) of it that support the
    answer's claims."""

    n: int
    passage: Passage
    quote: str

    @property
    def chunk_id(self) -> str:
        return self.passage.chunk_id

    @property
    def document_id(self) -> str:
        return self.passage.document_id

    @property
    def filename(self) -> str:
        return self.passage.filename

    @property
    def page_start(self) -> int | None:
        return self.passage.page_start

    @property
    def page_end(self) -> int | None:
        return self.passage.page_end

    @property
    def heading(self) -> str | None:
        return self.passage.heading

    def to_dict(self) -> dict[str, object]:
        """Its JSON form (API answers, the query log): where the passage is, not its text."""
        return {"n": self.n, **self.passage.location(), "quote": self.quote}


def parse_marker(body: str) -> list[int]:
    """Numbers in a marker body: "1, 3" -> [1, 3]; "2-4" -> [2, 3, 4]."""
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", body.strip()):
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            numbers.extend(range(low, min(high, low + _RANGE_CAP) + 1))
        elif part.isdigit():
            numbers.append(int(part))
    return numbers


class MarkerFilter:
    """Streams text through, rewriting each [..] marker to its valid numbers or removing it.

    A marker may arrive split over several tokens ("[1" then ", 2]"), so text from a "["
    is held back until the marker closes or proves not to be one.
    """

    def __init__(self, valid: Iterable[int]) -> None:
        self._valid = frozenset(valid)
        self._marker: str | None = None
        self._space = ""
        self._after_drop = False
        self._out: list[str] = []
        self.invalid = 0

    @property
    def text(self) -> str:
        return "".join(self._out)

    def feed(self, delta: str) -> str:
        emitted: list[str] = []
        for ch in delta:
            self._step(ch, emitted)
        chunk = "".join(emitted)
        self._out.append(chunk)
        return chunk

    def finish(self) -> str:
        tail = ("" if self._after_drop else self._space) + (self._marker or "")
        self._space, self._marker = "", None
        self._out.append(tail)
        return tail

    def _step(self, ch: str, emitted: list[str]) -> None:
        if self._marker is not None:
            if ch == "]":
                self._close_marker(self._marker + ch, emitted)
            elif ch in _MARKER_CHARS and len(self._marker) < _MAX_MARKER_LEN:
                self._marker += ch
            else:  # not a marker after all: release it as text and look at ch afresh
                emitted.append(self._space + self._marker)
                self._space, self._marker, self._after_drop = "", None, False
                self._step(ch, emitted)
        elif ch == "[":
            self._marker = "["
        elif ch.isspace():
            if not (self._after_drop and self._space):
                self._space += ch
        else:
            if self._after_drop and ch in _CLOSING_PUNCTUATION:
                self._space = ""  # "claim [99]." -> "claim." not "claim ."
            emitted.append(self._space + ch)
            self._space, self._after_drop = "", False

    def _close_marker(self, marker: str, emitted: list[str]) -> None:
        self._marker = None
        match = MARKER.fullmatch(marker)
        if match is None:  # "[]" or "[ ]": plain text
            emitted.append(self._space + marker)
            self._space = ""
            return
        numbers = parse_marker(match.group(1))
        kept = list(dict.fromkeys(n for n in numbers if n in self._valid))
        self.invalid += len(numbers) - sum(1 for n in numbers if n in self._valid)
        if kept:
            emitted.append(self._space + "[" + ", ".join(map(str, kept)) + "]")
            self._space, self._after_drop = "", False
        else:
            self._after_drop = True


def clean_markers(text: str, valid: Iterable[int]) -> tuple[str, int]:
    """The whole-text form of :class:`MarkerFilter`: (cleaned text, invalid count)."""
    marker_filter = MarkerFilter(valid)
    marker_filter.feed(text)
    marker_filter.finish()
    return marker_filter.text, marker_filter.invalid


def cited_claims(answer: str) -> list[tuple[str, list[int]]]:
    """(claim sentence without markers, numbers cited for it) for each answer sentence.

    Markers written after the full stop ("Sales rose. [1]") belong to the sentence before.
    """
    claims: list[tuple[str, list[int]]] = []
    for sentence in split_sentences(answer):
        leading = _LEADING_MARKERS.match(sentence)
        if leading and claims:
            previous, previous_numbers = claims[-1]
            claims[-1] = (previous, previous_numbers + _numbers(leading.group(0)))
            sentence = sentence[leading.end() :]
        claim = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub("", sentence)).strip()
        if claim.strip(" .,;:"):
            claims.append((claim, _numbers(sentence)))
    return claims


def _numbers(text: str) -> list[int]:
    return [n for m in MARKER.finditer(text) for n in parse_marker(m.group(1))]


def best_quote(claim: str, source_text: str) -> str:
    """The source sentence that best supports the claim, plus a second one when it covers
    claim terms the first misses (in source order)."""
    sentences = split_sentences(source_text)
    if not sentences:
        return source_text.strip()
    sentence_terms = [set(terms(s)) for s in sentences]
    claim_terms = set(terms(claim))
    idf = idf_weights(sentence_terms)
    scores = [overlap_score(claim_terms, st, idf) for st in sentence_terms]
    best = max(range(len(sentences)), key=lambda i: scores[i])
    chosen = [best]
    missing = claim_terms - sentence_terms[best]
    if missing and scores[best] < 0.9:
        extra = max(
            (i for i in range(len(sentences)) if i != best),
            key=lambda i: overlap_score(missing, sentence_terms[i], idf),
            default=None,
        )
        if extra is not None and overlap_score(missing, sentence_terms[extra], idf) > 0.25:
            chosen.append(extra)
    return " ".join(sentences[i] for i in sorted(chosen))


def build_citations(answer: str, prompt: Prompt) -> list[Citation]:
    """One citation per distinct valid [n], in order of first use, quoting the source
    sentence(s) that best support the answer sentences citing it."""
    claims_for: dict[int, list[str]] = {}
    for claim, numbers in cited_claims(answer):
        for n in numbers:
            if prompt.source(n) is not None:
                claims_for.setdefault(n, []).append(claim)
    citations: list[Citation] = []
    for n, claims in claims_for.items():
        source = prompt.source(n)
        assert source is not None
        citations.append(Citation(n, source, best_quote(" ".join(claims), source.text)))
    return citations
