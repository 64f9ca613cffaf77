"""Answering a question from retrieved sources: refusal, prompt, generation, markers and
citations, in one place for every caller (API, streaming API, CLI, eval).

:func:`stream_answer` yields :class:`TokenEvent` as text arrives and then exactly one
:class:`AnswerResult`; :func:`answer_question` is the non-streamed form.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.settings import Settings
from generation.citations import Citation, MarkerFilter, build_citations
from generation.generator import Generator
from generation.prompts import Prompt, build_prompt
from generation.refusal import (
    Thresholds,
    closest_documents,
    is_model_refusal,
    refusal_text,
    relevant_sources,
    unsupported,
)
from generation.sources import Source
from generation.tokens import get_token_counter


@dataclass(frozen=True, slots=True)
class TokenEvent:
    text: str


@dataclass
class AnswerResult:
    answer: str
    citations: list[Citation]
    refused: bool
    # [n] markers removed because they pointed to no source in the prompt.
    invalid_citations: int
    # True when a (non-refusal) answer kept no valid citation: not grounded.
    uncited: bool
    generator: str
    prompt_version: str | None
    # The sources the prompt numbered ([1] is sources_in_prompt[0]).
    sources_in_prompt: list[Source] = field(default_factory=list)
    # For a refusal: the documents that came closest.
    closest: list[Source] = field(default_factory=list)
    generate_ms: float = 0.0


def _words(text: str) -> Iterator[str]:
    for match in re.finditer(r"\S+\s*", text):
        yield match.group(0)


def stream_answer(
    question: str,
    sources: list[Source],
    generator: Generator,
    settings: Settings,
    *,
    stream: bool = True,
    rerank_calibrated: bool = False,
) -> Iterator[TokenEvent | AnswerResult]:
    """Answer ``question`` from ``sources`` (in retrieval rank order). Set
    ``rerank_calibrated`` when a cross-encoder produced the sources' ``rerank`` scores.

    Raises GeneratorUnavailable before the first event when the generator cannot answer,
    and during the stream when it fails mid-answer.
    """
    started = time.perf_counter()
    relevant = relevant_sources(sources, Thresholds.from_settings(settings), rerank_calibrated)
    if unsupported(question, relevant) is not None:
        relevant = []  # asked about a company or a quarter no source is about
    prompt = (
        build_prompt(
            question,
            relevant,
            context_tokens=settings.llm.context_tokens,
            max_answer_tokens=settings.llm.max_tokens,
            count=get_token_counter(settings),
        )
        if relevant
        else None
    )
    if prompt is None or not prompt.sources:
        closest = closest_documents(sources)
        text = refusal_text(question, closest)
        for word in _words(text):
            yield TokenEvent(word)
        yield AnswerResult(
            answer=text,
            citations=[],
            refused=True,
            invalid_citations=0,
            uncited=False,
            generator=generator.name,
            prompt_version=None,
            closest=closest,
            generate_ms=ms_since(started),
        )
        return

    # Called before the first token, so a generator that cannot answer raises here.
    deltas = generator.stream(prompt) if stream else iter([generator.generate(prompt)])
    markers = MarkerFilter(range(1, len(prompt.sources) + 1))
    for delta in deltas:
        text = markers.feed(delta)
        if text:
            yield TokenEvent(text)
    tail = markers.finish()
    if tail:
        yield TokenEvent(tail)
    yield _result(markers.text.strip(), markers.invalid, prompt, generator, started)


def _result(
    answer: str, invalid: int, prompt: Prompt, generator: Generator, started: float
) -> AnswerResult:
    citations = build_citations(answer, prompt)
    refused = not citations and is_model_refusal(answer)
    return AnswerResult(
        answer=answer,
        citations=citations,
        refused=refused,
        invalid_citations=invalid,
        uncited=not citations and not refused,
        generator=generator.name,
        prompt_version=prompt.version,
        sources_in_prompt=prompt.sources,
        closest=closest_documents(prompt.sources) if refused else [],
        generate_ms=ms_since(started),
    )


def answer_question(
    question: str,
    sources: list[Source],
    generator: Generator,
    settings: Settings,
    *,
    rerank_calibrated: bool = False,
) -> AnswerResult:
    """The non-streamed answer (the generator is called without streaming)."""
    events = stream_answer(
        question, sources, generator, settings, stream=False, rerank_calibrated=rerank_calibrated
    )
    for event in events:
        if isinstance(event, AnswerResult):
            return event
    raise AssertionError("stream_answer ended without a result")


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()``), to 0.1 ms."""
    return round((time.perf_counter() - started) * 1000.0, 1)
