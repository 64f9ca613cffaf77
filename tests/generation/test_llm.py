"""The OpenAI-compatible client against a real HTTP server speaking vLLM's protocol."""

from __future__ import annotations

import time

import pytest

from generation.llm import CircuitBreaker, GeneratorUnavailable, LLMClient, iter_sse_data
from tests.support.openai_server import OpenAITestServer, free_port

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def make_client(base_url: str, **overrides: object) -> LLMClient:
    options: dict[str, object] = {
        "connect_timeout_s": 1.0,
        "read_timeout_s": 2.0,
        "deadline_s": 5.0,
        "retries": 2,
        "backoff_s": 0.01,
        "breaker": CircuitBreaker(failures=3, cooldown_s=60.0),
    }
    options.update(overrides)
    return LLMClient(base_url, **options)  # type: ignore[arg-type]


def test_non_streamed_completion(server: OpenAITestServer) -> None:
    server.behaviour.reply = "Paris [1]."
    client = make_client(server.base_url, model="test-model", temperature=0.3, max_tokens=64)
    completion = client.complete(MESSAGES)
    assert completion.text == "Paris [1]."
    assert completion.finish_reason == "stop"
    assert completion.usage["completion_tokens"] == 2
    sent = server.chat_requests[-1]
    assert sent["model"] == "test-model" and sent["stream"] is False
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 64
    assert sent["messages"] == MESSAGES


def test_streamed_completion_yields_tokens_and_reads_usage(server: OpenAITestServer) -> None:
    server.behaviour.reply = "Paris is the capital [1]."
    server.behaviour.chunk_chars = 3
    client = make_client(server.base_url)
    pieces = list(client.stream_chat(MESSAGES))
    assert len(pieces) > 3  # really streamed in pieces
    assert "".join(pieces) == "Paris is the capital [1]."
    assert client.last_usage["completion_tokens"] == 5
    assert server.chat_requests[-1]["stream_options"] == {"include_usage": True}


def test_model_defaults_to_the_one_the_server_serves(server: OpenAITestServer) -> None:
    client = make_client(server.base_url.removesuffix("/v1"))  # base URL without /v1 works too
    assert client.list_models() == ["test-model"]
    client.complete(MESSAGES)
    assert server.chat_requests[-1]["model"] == "test-model"


def test_500_is_retried_then_succeeds(server: OpenAITestServer) -> None:
    server.behaviour.fail_first = 2
    client = make_client(server.base_url, model="test-model")
    assert client.complete(MESSAGES).text == "The sources say so [1]."
    assert len(server.chat_requests) == 3
    assert client.health()["state"] == "closed"


def test_persistent_500_raises_unavailable_after_bounded_retries(
    server: OpenAITestServer,
) -> None:
    server.behaviour.mode = "error500"
    client = make_client(server.base_url, model="test-model", retries=2)
    with pytest.raises(GeneratorUnavailable) as caught:
        client.complete(MESSAGES)
    assert caught.value.status_code == 503
    assert "HTTP 500" in caught.value.message and "scripted failure" in caught.value.message
    assert len(server.chat_requests) == 3  # one try + two retries, no more
    assert client.health()["consecutive_failures"] == 1


def test_stream_500_before_first_token_is_retried(server: OpenAITestServer) -> None:
    server.behaviour.fail_first = 1
    client = make_client(server.base_url, model="test-model")
    assert "".join(client.stream_chat(MESSAGES)) == "The sources say so [1]."
    assert len(server.chat_requests) == 2


def test_connection_dropped_before_body_is_retried_then_fails(server: OpenAITestServer) -> None:
    server.behaviour.mode = "drop_before"
    client = make_client(server.base_url, model="test-model", retries=1)
    with pytest.raises(GeneratorUnavailable, match=r"RemoteProtocolError|ReadError"):
        client.complete(MESSAGES)
    assert len(server.chat_requests) == 2


def test_connection_dropped_mid_stream_raises_after_partial_text(
    server: OpenAITestServer,
) -> None:
    server.behaviour.mode = "drop_mid"
    server.behaviour.reply = "one two three four five six seven eight"
    client = make_client(server.base_url, model="test-model")
    received: list[str] = []
    with pytest.raises(GeneratorUnavailable, match="stream interrupted"):
        for piece in client.stream_chat(MESSAGES):
            received.append(piece)
    assert received and "".join(received) != server.behaviour.reply
    # Text already shown to the user is never repeated by a retry.
    assert len(server.chat_requests) == 1
    assert client.health()["consecutive_failures"] == 1


def test_server_down_fails_within_the_deadline() -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}/v1", model="m", deadline_s=2.0)
    started = time.monotonic()
    with pytest.raises(GeneratorUnavailable, match="ConnectError"):
        client.complete(MESSAGES)
    assert time.monotonic() - started < 2.5


def test_slow_server_times_out_and_trips_the_breaker(server: OpenAITestServer) -> None:
    server.behaviour.mode = "slow"
    server.behaviour.delay_s = 3.0
    client = make_client(
        server.base_url,
        model="test-model",
        read_timeout_s=0.2,
        retries=0,
        breaker=CircuitBreaker(failures=2, cooldown_s=60.0),
    )
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(GeneratorUnavailable, match="ReadTimeout"):
            list(client.stream_chat(MESSAGES))
        assert time.monotonic() - started < 2.0  # the read timeout, not the server's delay
    assert client.health()["state"] == "open"
    assert "ReadTimeout" in client.health()["last_error"]
    calls = len(server.chat_requests)
    started = time.monotonic()
    with pytest.raises(GeneratorUnavailable, match="circuit breaker is open"):
        client.complete(MESSAGES)
    assert time.monotonic() - started < 0.5  # fails fast
    assert len(server.chat_requests) == calls  # without touching the server


def test_breaker_half_opens_after_cooldown_and_closes_on_success(
    server: OpenAITestServer,
) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown_s=10.0, clock=lambda: now[0])
    server.behaviour.mode = "error500"
    client = make_client(server.base_url, model="test-model", retries=0, breaker=breaker)
    with pytest.raises(GeneratorUnavailable):
        client.complete(MESSAGES)
    assert breaker.state == "open"
    now[0] = 11.0
    assert breaker.state == "half_open"
    server.behaviour.mode = "ok"
    assert client.complete(MESSAGES).text
    assert breaker.state == "closed"


def test_failed_trial_call_reopens_the_breaker(server: OpenAITestServer) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown_s=10.0, clock=lambda: now[0])
    server.behaviour.mode = "error500"
    client = make_client(server.base_url, model="test-model", retries=0, breaker=breaker)
    with pytest.raises(GeneratorUnavailable):
        client.complete(MESSAGES)
    now[0] = 11.0
    with pytest.raises(GeneratorUnavailable, match="HTTP 500"):
        client.complete(MESSAGES)
    assert breaker.state == "open"


def test_client_error_is_not_retried(server: OpenAITestServer) -> None:
    client = make_client(server.base_url, model="test-model")
    with pytest.raises(GeneratorUnavailable, match="HTTP 400: messages"):
        client.complete([{"role": "user"}])
    assert len(server.chat_requests) == 1


def test_sse_parser_follows_the_event_stream_format() -> None:
    lines = [": comment", "event: message", 'data: {"a":', "data: 1}", "", "data: [DONE]", ""]
    assert list(iter_sse_data(lines)) == ['{"a":\n1}', "[DONE]"]


def test_generator_metrics_count_tokens_errors_and_breaker_state(
    server: OpenAITestServer,
) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    server.behaviour.reply = "Paris [1]."
    breaker = CircuitBreaker(failures=1, cooldown_s=60.0)
    client = make_client(server.base_url, model="test-model", retries=0, breaker=breaker)
    before = value("ragkb_generator_tokens_total", kind="completion")
    client.complete(MESSAGES)
    assert value("ragkb_generator_tokens_total", kind="completion") == before + 2
    errors_before = value("ragkb_generator_errors_total", kind="unavailable")
    server.behaviour.mode = "error500"
    with pytest.raises(GeneratorUnavailable):
        client.complete(MESSAGES)
    assert value("ragkb_generator_errors_total", kind="unavailable") == errors_before + 1
    assert value("ragkb_generator_circuit_open") == 1.0
    with pytest.raises(GeneratorUnavailable):
        client.complete(MESSAGES)
    assert value("ragkb_generator_errors_total", kind="circuit_open") >= 1
