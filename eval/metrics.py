"""Metrics. Ranking metrics come from ``ir-measures`` (trec_eval's definitions), never
re-implemented here; answer metrics (token F1, exact match, citations, refusals,
groundedness) and latency percentiles are small enough to own.

Names in results are lower-case ``<measure>@<k>``: ``ndcg@10``, ``recall@100``,
``mrr@10``, ``map@100``, ``p@10``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import ir_measures
import numpy as np
from ir_measures import AP, RR, P, R, nDCG

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

RECALL_CURVE_KS = (1, 3, 5, 10, 20, 50, 100)
_MEASURES = {
    "ndcg@10": nDCG @ 10,
    "mrr@10": RR @ 10,
    "map@100": AP @ 100,
    "p@10": P @ 10,
    **{f"recall@{k}": R @ k for k in RECALL_CURVE_KS},
}
PRIMARY = "ndcg@10"


def ranking_scores(ranked: Sequence[str]) -> dict[str, float]:
    """A ranked list of ids as the ``{id: score}`` a run needs (higher first, ties none)."""
    out: dict[str, float] = {}
    for rank, doc in enumerate(ranked):
        out.setdefault(doc, float(len(ranked) - rank))
    return out


def retrieval_metrics(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean over the judged queries (a query with no result counts as zero)."""
    judged = {q: dict(r) for q, r in qrels.items() if r}
    full_run = {q: dict(run.get(q, {})) for q in judged}
    # trec_eval skips queries absent from the run; a placeholder keeps them as zeros.
    for docs in full_run.values():
        if not docs:
            docs["__none__"] = 0.0
    aggregate = ir_measures.calc_aggregate(list(_MEASURES.values()), judged, full_run)
    return {name: float(aggregate[measure]) for name, measure in _MEASURES.items()}


def per_query(qrels: Qrels, run: Run, name: str = PRIMARY) -> dict[str, float]:
    """One measure per judged query (for wins and losses between modes)."""
    measure = _MEASURES[name]
    judged = {q: dict(r) for q, r in qrels.items() if r}
    full_run = {q: dict(run.get(q, {})) or {"__none__": 0.0} for q in judged}
    out = {q: 0.0 for q in judged}
    for metric in ir_measures.iter_calc([measure], judged, full_run):
        out[metric.query_id] = float(metric.value)
    return out


# --- answers --------------------------------------------------------------------------------

_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002ffff]"
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# ASCII punctuation and symbols; other scripts' punctuation by its Unicode category.
_PUNCT = frozenset(string.punctuation)


def answer_tokens(text: str) -> list[str]:
    """SQuAD's normalisation (lower case, no punctuation or English articles), with every
    CJK character a token of its own (as the CMRC2018 scorer counts them)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(
        " " if ch in _PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text
    )
    text = _ARTICLES.sub(" ", text)
    tokens: list[str] = []
    for word in text.split():
        buffer = ""
        for ch in word:
            if _CJK.match(ch):
                if buffer:
                    tokens.append(buffer)
                    buffer = ""
                tokens.append(ch)
            else:
                buffer += ch
        if buffer:
            tokens.append(buffer)
    return tokens


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    predicted = answer_tokens(prediction)
    return float(any(predicted == answer_tokens(g) for g in golds))


def token_f1(prediction: str, golds: Iterable[str]) -> float:
    """The best F1 over the gold answers (0 when there is none)."""
    predicted = answer_tokens(prediction)
    best = 0.0
    for gold in golds:
        expected = answer_tokens(gold)
        common = sum((Counter(predicted) & Counter(expected)).values())
        if not predicted or not expected or common == 0:
            continue
        precision, recall = common / len(predicted), common / len(expected)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def citation_precision_recall(
    cited: Sequence[str], relevant: Iterable[str]
) -> tuple[float | None, float | None]:
    """Share of cited documents that are expected, share of expected documents cited
    (None where undefined: nothing cited, nothing expected)."""
    wanted = set(relevant)
    distinct = list(dict.fromkeys(cited))
    precision = sum(d in wanted for d in distinct) / len(distinct) if distinct else None
    recall = len(wanted & set(distinct)) / len(wanted) if wanted else None
    return precision, recall


def mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of latencies in milliseconds."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0}
    array = np.asarray(values, dtype=float)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "mean": round(float(array.mean()), 2),
    }
