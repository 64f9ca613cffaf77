"""The generator interface and its factory.

Two implementations: the OpenAI-compatible :class:`~generation.llm.LLMClient` when
``RAGKB_LLM_BASE_URL`` is set, otherwise the embedded
:class:`~generation.extractive.ExtractiveGenerator`. One instance per configuration and
process (held by ``services.container.Services``), so the circuit breaker sees every call
the process makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from core.settings import Settings
from generation.extractive import ExtractiveGenerator
from generation.llm import GeneratorUnavailable, LLMClient
from generation.prompts import Prompt


class Generator(Protocol):
    name: str

    def generate(self, prompt: Prompt) -> str:
        """The whole answer text (markers included) in one call."""
        ...

    def stream(self, prompt: Prompt) -> Iterator[str]:
        """The answer as text deltas; raises GeneratorUnavailable before the first one
        when the generator cannot answer."""
        ...

    def health(self) -> dict[str, Any]:
        """Cheap state for /readyz; ``state`` is "ok", "closed", "half_open" or "open"."""
        ...


def build_generator(settings: Settings) -> Generator:
    """The generator these settings ask for. A process builds one (``services.container``)
    and every call goes through it, so the circuit breaker sees all of them."""
    if settings.llm.base_url:
        return LLMClient.from_settings(settings)
    return ExtractiveGenerator(
        max_sentences=settings.answer.extractive_max_sentences,
        min_overlap=settings.answer.extractive_min_overlap,
    )


def readiness(generator: Generator) -> dict[str, Any]:
    """The generator's readiness for /readyz: a dict when it can answer, else raises
    GeneratorUnavailable saying why (breaker open with its last error, or no server)."""
    state = generator.health()
    if isinstance(generator, LLMClient):
        if state["state"] == "open":
            raise GeneratorUnavailable(
                f"circuit breaker open after repeated failures (last error: "
                f"{state['last_error']}); retry in {state['retry_in_s']}s"
            )
        # One cheap probe, so that a server that is down shows before the first question.
        state["models"] = generator.list_models()
    return state
