"""The generator interface and the process-wide factory.

Two implementations: the OpenAI-compatible :class:`~generation.llm.LLMClient` when
``RAGKB_LLM_BASE_URL`` is set, otherwise the embedded
:class:`~generation.extractive.ExtractiveGenerator`. One instance per configuration and
process, so the circuit breaker sees every call the process makes.
"""

from __future__ import annotations

import threading
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


_lock = threading.Lock()
_generators: dict[str, Generator] = {}

_GENERATOR_FIELDS = {
    "llm_base_url",
    "llm_model",
    "llm_api_key",
    "llm_temperature",
    "llm_max_tokens",
    "llm_connect_timeout_s",
    "llm_read_timeout_s",
    "llm_deadline_s",
    "llm_retries",
    "llm_retry_backoff_s",
    "llm_breaker_failures",
    "llm_breaker_cooldown_s",
    "extractive_max_sentences",
}


def _key(settings: Settings) -> str:
    values = settings.model_dump(include=_GENERATOR_FIELDS)
    if settings.llm_api_key is not None:
        values["llm_api_key"] = settings.llm_api_key.get_secret_value()
    return repr(sorted(values.items()))


def build_generator(settings: Settings) -> Generator:
    """A new generator for these settings (tests and tools that want their own)."""
    if settings.llm_base_url:
        return LLMClient.from_settings(settings)
    return ExtractiveGenerator(max_sentences=settings.extractive_max_sentences)


def get_generator(settings: Settings) -> Generator:
    """The process-wide generator for these settings."""
    key = _key(settings)
    with _lock:
        if key not in _generators:
            _generators[key] = build_generator(settings)
        return _generators[key]


def readiness(settings: Settings) -> dict[str, Any]:
    """The generator's readiness for /readyz: a dict when it can answer, else raises
    GeneratorUnavailable saying why (breaker open with its last error, or no server)."""
    generator = get_generator(settings)
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
