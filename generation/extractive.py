"""The embedded generator: an extractive answer, so the product answers with citations on
a machine with no GPU and no LLM server.

A question that asks for a figure is answered from the table row and column it names,
figure first ("Total net sales for the three months ended December 31, 2022: $117,154
million [1]"), with changes and ratios computed from the cited rows
(``generation.figure_answers``). Other questions get the source sentences that best match
them (IDF-weighted term overlap, with a preference for better-ranked sources, and only
from documents that mention the names the question asks about when some do), the best
first, each followed by its [n] marker; when no sentence covers ``min_overlap`` of the
question, it says it cannot answer. Its output then goes through the same marker filter,
citation and refusal code as an LLM's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from generation.figure_answers import figure_answer
from generation.prompts import NO_ANSWER_SENTENCE, Prompt
from generation.text import (
    idf_weights,
    overlap_score,
    question_entities,
    split_sentences,
    terms,
)

_MAX_UNIT_CHARS = 400  # a table row or a run-on "sentence" is cut into units of this size
_MIN_UNIT_TERMS = 3
# What being the top source is worth against the term overlap (0..1); with 1.0 a sentence
# of a lower-ranked source must match the question clearly better to be quoted. Chosen on
# the SEC 10-Q questions (eval/sec_citations.py, the 195-question set).
_RANK_PRIOR = 1.0


@dataclass(frozen=True, slots=True)
class _Unit:
    n: int
    position: int
    text: str
    terms: frozenset[str]


def _units(text: str) -> list[str]:
    """Sentences, with overlong ones (tables, lists) split on lines, then on words."""
    out: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= _MAX_UNIT_CHARS:
            out.append(sentence)
            continue
        for line in sentence.splitlines():
            line = re.sub(r"\s+", " ", line).strip()
            while len(line) > _MAX_UNIT_CHARS:
                cut = line.rfind(" ", 0, _MAX_UNIT_CHARS)
                cut = cut if cut > 0 else _MAX_UNIT_CHARS
                out.append(line[:cut].strip())
                line = line[cut:].strip()
            if line:
                out.append(line)
    return out


def _focus(prompt: Prompt) -> list[int]:
    """The numbers of the sources worth quoting: when the question names something
    ("Apple", "AWS", "Lyon") and some retrieved passages of a document mention it, only the
    documents that do. A passage about another company that merely shares the question's
    vocabulary ("foreign exchange rates") is the typical wrong answer this avoids."""
    everything = list(range(1, len(prompt.sources) + 1))
    entities = question_entities(prompt.question)
    if not entities:
        return everything
    naming = {s.document_id for s in prompt.sources if entities & set(terms(s.text))}
    focused = [n for n in everything if prompt.sources[n - 1].document_id in naming]
    return focused or everything


class ExtractiveGenerator:
    """Implements the generator interface (``generate``, ``stream``, ``health``)."""

    name = "extractive"

    def __init__(
        self,
        max_sentences: int = 3,
        *,
        rank_prior: float = _RANK_PRIOR,
        min_overlap: float = 0.0,
    ) -> None:
        self.max_sentences = max_sentences
        self.rank_prior = rank_prior
        self.min_overlap = min_overlap

    def select(self, prompt: Prompt) -> list[tuple[int, str]]:
        """(source number, sentence) pairs for the answer, in source order."""
        numbers = _focus(prompt)
        units = [
            _Unit(n, i, text, frozenset(terms(text)))
            for n in numbers
            for i, text in enumerate(_units(prompt.sources[n - 1].text))
        ]
        units = [u for u in units if len(u.terms) >= _MIN_UNIT_TERMS] or units
        if not units:
            return []
        question_terms = set(terms(prompt.question))
        idf = idf_weights(u.terms for u in units)
        count = len(prompt.sources)

        def overlap(unit: _Unit) -> float:
            return overlap_score(question_terms, unit.terms, idf)

        def score(unit: _Unit) -> float:
            return overlap(unit) + self.rank_prior * (count - unit.n + 1) / count

        best_overlap = max(overlap(u) for u in units)
        if best_overlap == 0.0:
            # Nothing shares a word with the question (another language, a paraphrase):
            # the retrieval ranked these sources first, so quote the top one's opening.
            chosen = [u for u in units if u.n == numbers[0]][:2]
        else:
            floor = best_overlap * 0.5  # keep the answer to sentences that really match
            ranked = sorted(units, key=score, reverse=True)
            chosen = [u for u in ranked if overlap(u) >= floor][: self.max_sentences]
        # The best sentence first: the answer comes before what surrounds it.
        return [(u.n, u.text) for u in chosen]

    def best_overlap(self, prompt: Prompt) -> float:
        """How much of the question the best sentence of the focused sources covers (0..1):
        below ``min_overlap`` nothing answers it."""
        numbers = _focus(prompt)
        question_terms = set(terms(prompt.question))
        units = [
            frozenset(terms(text)) for n in numbers for text in _units(prompt.sources[n - 1].text)
        ]
        if not units or not question_terms:
            return 0.0
        idf = idf_weights(units)
        return max(overlap_score(question_terms, u, idf) for u in units)

    def generate(self, prompt: Prompt) -> str:
        figure = figure_answer(prompt, _focus(prompt))
        if figure is not None:
            return figure
        if self.best_overlap(prompt) < self.min_overlap:
            return NO_ANSWER_SENTENCE
        return " ".join(f"{text} [{n}]" for n, text in self.select(prompt))

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """The same answer word by word, so the streaming path is exercised identically."""
        answer = self.generate(prompt)
        for match in re.finditer(r"\S+\s*", answer):
            yield match.group(0)

    def health(self) -> dict[str, Any]:
        return {"generator": self.name, "state": "ok"}
