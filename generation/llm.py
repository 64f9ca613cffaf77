"""The OpenAI-compatible chat-completions client, as ``vllm serve <model>`` exposes it.

Both non-streamed and streamed (SSE) calls go through one retry loop: connection errors,
timeouts and 5xx answers are retried with exponential backoff and full jitter, but never
past the call's deadline, and a stream is only retried before its first token (after
that, a retry would repeat text the user has already seen). A circuit breaker counts
failed calls: after ``breaker_failures`` in a row every call fails fast for
``breaker_cooldown_s``, then one trial call decides whether it closes again.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from core.errors import ServiceUnavailable
from core.metrics import GENERATOR_CIRCUIT_OPEN, GENERATOR_ERRORS, GENERATOR_TOKENS
from core.settings import Settings
from generation.prompts import Prompt

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]


class GeneratorUnavailable(ServiceUnavailable):
    """The LLM server cannot answer now (down, failing, too slow, or breaker open)."""

    code = "generator_unavailable"


class _Retryable(Exception):
    """A failure worth another attempt (connection error, timeout, 5xx)."""


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker: closed -> open -> half_open -> closed."""

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self.last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise GeneratorUnavailable while open; in half_open let exactly one call try."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._trial_running:
                self._trial_running = True
                return
            assert self._opened_at is not None
            retry_in = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        GENERATOR_ERRORS.labels(kind="circuit_open").inc()
        raise GeneratorUnavailable(
            f"generator circuit breaker is open after {self.failures_to_open} failed calls "
            f"(last error: {self.last_error}); next try in {retry_in:.0f}s"
        )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False
        GENERATOR_CIRCUIT_OPEN.set(0)

    def record_failure(self, error: str) -> None:
        with self._lock:
            self.last_error = error
            self._failures += 1
            if self._trial_running or self._failures >= self.failures_to_open:
                self._opened_at = self._clock()
            self._trial_running = False
            is_open = self._opened_at is not None
        GENERATOR_CIRCUIT_OPEN.set(1 if is_open else 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state = self._state()
            retry_in = (
                max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
                if self._opened_at is not None
                else None
            )
            return {
                "state": state,
                "consecutive_failures": self._failures,
                "last_error": self.last_error,
                "retry_in_s": None if retry_in is None else round(retry_in, 1),
            }


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` payload of each server-sent event (multi-line data joined by newlines;
    comments, ``event:`` and ``id:`` fields ignored)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def normalize_base_url(url: str) -> str:
    """Accept ``http://host:8000`` and ``http://host:8000/v1`` alike."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class LLMClient:
    """A generator backed by an OpenAI-compatible server (vLLM, llama.cpp server, ...)."""

    name = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        temperature: float = 0.1,
        max_tokens: int = 512,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 60.0,
        deadline_s: float = 90.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker(failures=3, cooldown_s=30.0)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers)
        self.last_usage: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        if not settings.llm.base_url:
            raise ValueError("RAGKB_LLM_BASE_URL is not set")
        return cls(
            settings.llm.base_url,
            settings.llm.model,
            api_key=settings.llm.api_key.get_secret_value() if settings.llm.api_key else None,
            temperature=settings.llm.temperature,
            max_tokens=settings.llm.max_tokens,
            connect_timeout_s=settings.llm.connect_timeout_s,
            read_timeout_s=settings.llm.read_timeout_s,
            deadline_s=settings.llm.deadline_s,
            retries=settings.llm.retries,
            backoff_s=settings.llm.retry_backoff_s,
            breaker=CircuitBreaker(settings.llm.breaker_failures, settings.llm.breaker_cooldown_s),
        )

    def close(self) -> None:
        self._http.close()

    # --- the generator interface -------------------------------------------------------
    def generate(self, prompt: Prompt) -> str:
        return self.complete(prompt.messages).text

    def stream(self, prompt: Prompt) -> Iterator[str]:
        return self.stream_chat(prompt.messages)

    def health(self) -> dict[str, Any]:
        """Cheap state for /readyz (no network): the breaker's view of the server."""
        return {
            "generator": self.name,
            "base_url": self.base_url,
            "model": self._model,
            **self.breaker.snapshot(),
        }

    # --- protocol calls ------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """``GET /v1/models`` (one attempt, connect timeout only: used to probe)."""
        timeout = httpx.Timeout(self.connect_timeout_s)
        try:
            return self._list_models(timeout)
        except _Retryable as exc:
            raise GeneratorUnavailable(f"LLM server at {self.base_url}: {exc}") from exc

    def _list_models(self, timeout: httpx.Timeout) -> list[str]:
        try:
            response = self._http.get(f"{self.base_url}/models", timeout=timeout)
            response.raise_for_status()
            return [str(m["id"]) for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise _Retryable(_describe(exc)) from exc

    def _model_name(self, timeout: httpx.Timeout) -> str:
        """The configured model, else the first one the server serves (vLLM serves one)."""
        if self._model is None:
            models = self._list_models(timeout)
            if not models:
                raise GeneratorUnavailable(f"LLM server at {self.base_url} serves no model")
            self._model = models[0]
        return self._model

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """A non-streamed chat completion."""

        def attempt(timeout: httpx.Timeout) -> Completion:
            payload = self._payload(messages, timeout, stream=False)
            response = self._send(payload, timeout, stream=False)
            try:
                body = response.json()
                choice = body["choices"][0]
                text = choice["message"].get("content") or ""
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise _Retryable(f"malformed completion: {_describe(exc)}") from exc
            return Completion(
                text=text, finish_reason=choice.get("finish_reason"), usage=body.get("usage") or {}
            )

        completion = self._call(attempt)
        self._record_usage(completion.usage)
        return completion

    def stream_chat(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Content deltas of a streamed chat completion, as they arrive.

        Opening the stream and reading up to its first token happen inside the retry loop,
        so a failure before any text reaches the caller is retried (and raised here, not
        on the first ``next()``); a failure mid-stream raises GeneratorUnavailable.
        """

        def attempt(timeout: httpx.Timeout) -> tuple[httpx.Response, Iterator[str], list[str]]:
            payload = self._payload(messages, timeout, stream=True)
            response = self._send(payload, timeout, stream=True)
            try:
                deltas = self._deltas(response.iter_lines())
                first: list[str] = []
                for delta in deltas:
                    first.append(delta)
                    if delta:
                        break
                return response, deltas, first
            except BaseException:
                response.close()
                raise

        response, deltas, first = self._call(attempt, stream=True)
        return self._continue_stream(response, deltas, first)

    def _continue_stream(
        self, response: httpx.Response, deltas: Iterator[str], first: list[str]
    ) -> Iterator[str]:
        try:
            yield from (d for d in first if d)
            for delta in deltas:
                if delta:
                    yield delta
        except (httpx.HTTPError, _Retryable) as exc:
            error = f"stream interrupted: {_describe(exc)}"
            self.breaker.record_failure(error)
            raise GeneratorUnavailable(f"LLM server at {self.base_url}: {error}") from exc
        except GeneratorExit:  # the reader went away (client disconnected): not a failure
            self.breaker.record_success()
            raise
        finally:
            response.close()
        self.breaker.record_success()

    # --- plumbing --------------------------------------------------------------------------
    def _payload(
        self, messages: list[dict[str, str]], timeout: httpx.Timeout, *, stream: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model_name(timeout),
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _send(
        self, payload: dict[str, Any], timeout: httpx.Timeout, *, stream: bool
    ) -> httpx.Response:
        request = self._http.build_request(
            "POST", f"{self.base_url}/chat/completions", json=payload, timeout=timeout
        )
        try:
            response = self._http.send(request, stream=stream)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise _Retryable(_describe(exc)) from exc
        if response.status_code >= 400:
            detail = _error_detail(response)
            response.close()
            message = f"HTTP {response.status_code}: {detail}"
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(message)
            raise GeneratorUnavailable(
                f"LLM server at {self.base_url} refused the request: {message}"
            )
        return response

    def _deltas(self, lines: Iterator[str]) -> Iterator[str]:
        try:
            for data in iter_sse_data(lines):
                if data.strip() == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:  # vLLM reports errors inside the stream
                    raise _Retryable(f"server error in stream: {chunk['error']}")
                if chunk.get("usage"):
                    self._record_usage(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    yield (choice.get("delta") or {}).get("content") or ""
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise _Retryable(_describe(exc)) from exc
        except json.JSONDecodeError as exc:
            raise _Retryable(f"malformed stream chunk: {exc}") from exc
        # The connection ended without [DONE]: the server dropped it mid-answer.
        raise _Retryable("stream ended without [DONE]")

    def _call(self, attempt: Callable[[httpx.Timeout], T], *, stream: bool = False) -> T:
        """Run ``attempt`` with retries inside the deadline, through the breaker."""
        self.breaker.before_call()
        deadline = time.monotonic() + self.deadline_s
        error = "no attempt made"
        for number in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            timeout = httpx.Timeout(
                min(self.read_timeout_s, remaining),
                connect=min(self.connect_timeout_s, remaining),
            )
            try:
                result = attempt(timeout)
            except _Retryable as exc:
                error = str(exc)
            except GeneratorUnavailable as exc:
                GENERATOR_ERRORS.labels(kind="rejected").inc()
                self.breaker.record_failure(exc.message)
                raise
            else:
                if not stream:  # a stream counts as a success once it has finished
                    self.breaker.record_success()
                return result
            if number < self.retries:
                # Full jitter: replicas retrying together must not hit the server in step.
                pause = random.uniform(0, self.backoff_s * 2**number)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
        GENERATOR_ERRORS.labels(kind="unavailable").inc()
        self.breaker.record_failure(error)
        raise GeneratorUnavailable(f"LLM server at {self.base_url} is unavailable: {error}")

    def _record_usage(self, usage: dict[str, int]) -> None:
        """Keep the last call's usage and count tokens for /metrics."""
        self.last_usage = usage
        for kind in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(kind), int):
                GENERATOR_TOKENS.labels(kind=kind.removesuffix("_tokens")).inc(usage[kind])


def _describe(exc: BaseException) -> str:
    text = str(exc) or ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_detail(response: httpx.Response) -> str:
    try:
        response.read()
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(body.get("message") or body)[:300]
    except (ValueError, httpx.HTTPError):
        return response.text[:300] if response.is_stream_consumed else "(no body)"
