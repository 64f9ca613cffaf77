"""Groundedness: the share of an answer's sentences whose cited chunk supports them.

The judge is, in order of preference: the configured LLM (``RAGKB_LLM_BASE_URL``; asked a
yes/no question per sentence and source), the configured cross-encoder
(``RAGKB_RERANK_MODEL``; sentence and source scored as a pair, supported at 0.5), and
otherwise a lexical check (most of the sentence's terms occur in the source). The lexical
judge is weak evidence; the report names the judge that ran. A sentence without a citation
is unsupported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from core.settings import Settings
from generation.citations import cited_claims
from generation.sources import Source
from retrieval.rerank import Candidate, Reranker
from retrieval.tokenizer import tokenize

log = logging.getLogger("ragkb.eval")

_LEXICAL_SUPPORT = 0.6
_CROSS_ENCODER_SUPPORT = 0.5
_JUDGE_PROMPT = (
    "You check citations. Answer with one word, yes or no: does the SOURCE state or directly "
    "imply the CLAIM?\n\nSOURCE:\n{source}\n\nCLAIM:\n{claim}"
)


class Judge(Protocol):
    name: str

    def supports(self, claim: str, source: str) -> bool: ...


class LexicalJudge:
    name = "lexical (term overlap)"

    def supports(self, claim: str, source: str) -> bool:
        claim_terms = set(tokenize(claim))
        if not claim_terms:
            return True
        return len(claim_terms & set(tokenize(source))) / len(claim_terms) >= _LEXICAL_SUPPORT


class CrossEncoderJudge:
    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker
        self.name = f"cross-encoder ({self.reranker.name})"

    def supports(self, claim: str, source: str) -> bool:
        score = self.reranker.score(claim, [Candidate(source, "", None, None)])[0]
        return score >= _CROSS_ENCODER_SUPPORT


class LLMJudge:
    def __init__(self, settings: Settings) -> None:
        from generation.llm import LLMClient

        self.client = LLMClient.from_settings(settings)
        self.name = f"llm ({settings.llm.model or 'served model'})"

    def supports(self, claim: str, source: str) -> bool:
        prompt = _JUDGE_PROMPT.format(source=source[:4000], claim=claim)
        reply = self.client.complete([{"role": "user", "content": prompt}]).text
        return reply.strip().lower().lstrip("*\"' ").startswith("yes")


def make_judge(settings: Settings, reranker: Reranker) -> Judge:
    """The LLM when one is configured, else ``reranker`` when it is a cross-encoder (the
    process's, ``Services.reranker``), else term overlap."""
    if settings.llm.base_url:
        return LLMJudge(settings)
    if reranker.calibrated:
        return CrossEncoderJudge(reranker)
    return LexicalJudge()


def groundedness(answer: str, sources_in_prompt: Sequence[Source], judge: Judge) -> float | None:
    """Supported sentences / sentences; None for an empty answer."""
    claims = cited_claims(answer)
    if not claims:
        return None
    supported = 0
    for claim, numbers in claims:
        texts = [sources_in_prompt[n - 1].text for n in numbers if 0 < n <= len(sources_in_prompt)]
        try:
            if any(judge.supports(claim, text) for text in texts):
                supported += 1
        except Exception as exc:  # a judge that fails must not fail the run
            log.warning("groundedness judge %s failed: %s", judge.name, exc)
            return None
    return supported / len(claims)
