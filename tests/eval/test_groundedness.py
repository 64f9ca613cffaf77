"""Groundedness: the LLM judge (on the OpenAI-compatible test server) and the lexical
fallback count the answer sentences whose cited source supports them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.groundedness import LexicalJudge, LLMJudge, groundedness, make_judge
from generation.sources import Source
from retrieval.rerank import load_reranker
from tests.support.helpers import make_settings
from tests.support.openai_server import OpenAITestServer

SOURCES = [
    Source("c1", "d1", "orion.md", "The Orion merger closes on 14 March. Code word: PELICAN-7."),
    Source("c2", "d2", "weather.md", "The forecast for Friday is sunny."),
]
ANSWER = "The merger closes on 14 March [1]. It will rain on Friday [2]. No source here."


def test_llm_judge_asks_per_sentence_and_source(server: OpenAITestServer, tmp_path: Path) -> None:
    def reply(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        claim = prompt.split("CLAIM:")[1]
        return "Yes." if "14 March" in claim else "no"

    server.behaviour.reply = reply
    settings = make_settings(
        tmp_path, llm={"base_url": server.base_url, "model": "test-model", "retries": 0}
    )
    judge = make_judge(settings, load_reranker(settings))
    assert isinstance(judge, LLMJudge) and judge.name.startswith("llm")
    assert groundedness(ANSWER, SOURCES, judge) == 1 / 3
    assert len(server.chat_requests) == 2  # the uncited sentence needs no call


def test_lexical_judge_is_the_fallback(tmp_path: Path) -> None:
    plain = make_settings(tmp_path)
    judge = make_judge(plain, load_reranker(plain))
    assert isinstance(judge, LexicalJudge)
    assert groundedness(ANSWER, SOURCES, judge) == 1 / 3
    assert groundedness("", SOURCES, judge) is None
