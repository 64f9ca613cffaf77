"""The second stage: re-score the top fused candidates, drop weak ones, cap per document.

With ``RAGKB_RERANK_MODEL`` naming a cross-encoder (a hub id in the local cache, or a
folder), it scores (query, chunk) pairs; its sigmoid output (0..1) is comparable across
queries, so the relevance threshold applies. No PyPI package ships cross-encoder weights,
so the embedded default, or a configured model that cannot be loaded offline, re-scores
with signals it already has: a convex fusion of the candidates' dense cosine and BM25
scores, each min-max normalised over the candidates (on SciFact it beats RRF's rank-only
fusion, see ``bench/README.md``). Its name in responses and ``/readyz`` says which ran.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.model_loading import force_offline, quiet_loading, resolve_model
from core.settings import Settings

log = logging.getLogger("ragkb.retrieval")

# Weight of the dense score in the score-fusion second stage (tuned on SciFact *train*).
FUSION_DENSE_WEIGHT = 0.4


@dataclass(frozen=True, slots=True)
class Candidate:
    text: str
    document_id: str
    dense: float | None
    bm25: float | None


class Reranker(Protocol):
    name: str
    # True when scores are calibrated relevance in 0..1 (then the threshold applies).
    calibrated: bool

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]: ...


class ScoreFusionReranker:
    """Convex fusion of min-max-normalised dense and BM25 scores."""

    calibrated = False

    def __init__(self, dense_weight: float = FUSION_DENSE_WEIGHT, reason: str = "") -> None:
        self.dense_weight = dense_weight
        self.name = "score-fusion(dense+bm25)" + (f": {reason}" if reason else "")

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        dense = _min_max([c.dense for c in candidates])
        bm25 = _min_max([c.bm25 for c in candidates])
        w = self.dense_weight
        return [w * d + (1.0 - w) * s for d, s in zip(dense, bm25, strict=True)]


class CrossEncoderReranker:
    calibrated = True

    def __init__(self, model_ref: str, batch_size: int = 32) -> None:
        force_offline()
        quiet_loading()
        from sentence_transformers import CrossEncoder

        self.model_ref = model_ref
        self.batch_size = batch_size
        self._model = CrossEncoder(resolve_model(model_ref), device="cpu", num_labels=1)
        self.name = f"cross-encoder:{model_ref}"

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        if not candidates:
            return []
        import torch

        logits = self._model.predict(
            [(query, c.text) for c in candidates],
            batch_size=self.batch_size,
            activation_fn=torch.nn.Identity(),
            show_progress_bar=False,
        )
        return [_sigmoid(float(x)) for x in logits]


def second_stage(
    reranker: Reranker,
    query: str,
    candidates: Sequence[Candidate],
    *,
    top_k: int,
    max_per_document: int | None,
    min_score: float | None,
    preferred: frozenset[str] = frozenset(),
    prefer: str = "filter",
    boost: float = 0.0,
) -> list[tuple[int, float]]:
    """(candidate index, rerank score) of the final list, best first.

    Candidates of ``preferred`` documents (those the question names) come first
    (``prefer="filter"``) or get ``boost`` added to their score (``"boost"``); a weak
    candidate is dropped either way (the threshold applies to the model's own score)."""
    scores = reranker.score(query, candidates)

    def rank(i: int) -> tuple[bool, float]:
        named = candidates[i].document_id in preferred
        if prefer == "boost":
            return (False, scores[i] + (boost if named else 0.0))
        return (named and prefer == "filter", scores[i])

    order = sorted(range(len(candidates)), key=rank, reverse=True)
    per_document: dict[str, int] = {}
    kept: list[tuple[int, float]] = []
    for i in order:
        if reranker.calibrated and min_score is not None and scores[i] < min_score:
            continue
        doc = candidates[i].document_id
        if max_per_document is not None and per_document.get(doc, 0) >= max_per_document:
            continue
        per_document[doc] = per_document.get(doc, 0) + 1
        kept.append((i, scores[i]))
        if len(kept) == top_k:
            break
    return kept


def reranker_state(settings: Settings, loaded: Reranker | None) -> dict[str, Any]:
    """What ``/readyz`` says about the second stage: ``loaded`` when it has been loaded,
    else what the settings ask for (a readiness probe must not load a model)."""
    if loaded is not None:
        return {"reranker": loaded.name, "cross_encoder": loaded.calibrated}
    if settings.models.rerank_model:
        return {"reranker": f"cross-encoder:{settings.models.rerank_model} (loads on first use)"}
    return {"reranker": ScoreFusionReranker(reason=_NO_MODEL).name, "cross_encoder": False}


_NO_MODEL = "no cross-encoder configured (RAGKB_RERANK_MODEL)"


def load_reranker(settings: Settings) -> Reranker:
    """The second stage the settings ask for: the cross-encoder, or score fusion (and why)
    when none is configured or it cannot be loaded offline."""
    ref = settings.models.rerank_model
    if not ref:
        return ScoreFusionReranker(settings.retrieval.fusion_dense_weight, reason=_NO_MODEL)
    try:
        return CrossEncoderReranker(ref)
    except Exception as exc:  # offline and not cached, wrong path, not a cross-encoder...
        log.warning("cross-encoder %r unavailable, using score fusion: %s", ref, exc)
        return ScoreFusionReranker(
            settings.retrieval.fusion_dense_weight,
            reason=f"cross-encoder {ref!r} unavailable ({exc})",
        )


def _min_max(values: Sequence[float | None]) -> list[float]:
    present = [v for v in values if v is not None]
    if not present:
        return [0.0] * len(values)
    low, high = min(present), max(present)
    span = high - low
    return [0.0 if v is None else ((v - low) / span if span > 0 else 1.0) for v in values]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
