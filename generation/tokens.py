"""Counting prompt tokens so the sources fit the model's context window.

With ``RAGKB_LLM_TOKENIZER`` set, the served model's own tokenizer counts exactly;
otherwise a deliberately pessimistic estimate is used (it over-counts English words and
CJK characters), because overflowing the context fails the whole request while
under-filling it only drops a low-ranked source.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import Any

from core.model_loading import resolve_model
from core.settings import Settings

TokenCounter = Callable[[str], int]

_PIECE = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+|[^\w\s]|_", re.UNICODE
)
_lock = threading.Lock()
_counters: dict[str, TokenCounter] = {}


def estimate_tokens(text: str) -> int:
    """Upper-bound style estimate: a word costs one token per 4 characters (at least
    one), a CJK character or a punctuation mark one token."""
    total = 0
    for piece in _PIECE.findall(text):
        total += max(1, math.ceil(len(piece) / 4)) if piece.isalnum() else 1
    return total


def _load_tokenizer(name: str) -> TokenCounter:
    from transformers import AutoTokenizer  # heavy import, only when configured

    tokenizer: Any = AutoTokenizer.from_pretrained(resolve_model(name))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count


def get_token_counter(settings: Settings) -> TokenCounter:
    """The process-wide counter for the configured tokenizer (or the estimate)."""
    name = settings.llm.tokenizer
    if not name:
        return estimate_tokens
    with _lock:
        if name not in _counters:
            _counters[name] = _load_tokenizer(name)
        return _counters[name]
