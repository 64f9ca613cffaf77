"""BM25 tokenisations for Chinese on CMRC2018, with ``rank_bm25`` (the reference the index
ranks like) and the product's k1/b: character bigrams (the product's), bigrams plus jieba
words, and the effect of folding Traditional to Simplified (OpenCC) when the paragraphs
are Traditional and the questions Simplified.

    PYTHONPATH=$PWD .venv/bin/python bench/cjk_tokenization.py [--limit 3219]

nDCG@10 per variant (one relevant paragraph per question); the last line is a summary.
jieba is not a dependency: the variants that need it are skipped without it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import opencc
from rank_bm25 import BM25Okapi

from core.settings import Settings
from retrieval import tokenizer as product

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def ndcg10(scores: np.ndarray, relevant: int) -> float:
    top = np.argsort(-scores, kind="stable")[:10]
    for rank, doc in enumerate(top):
        if doc == relevant:
            return 1.0 / math.log2(rank + 2)
    return 0.0


def run(
    name: str,
    tokenize: Callable[[str], list[str]],
    docs: list[str],
    questions: list[tuple[int, str]],
) -> float:
    settings = Settings(_env_file=None)
    started = time.perf_counter()
    bm25 = BM25Okapi(
        [tokenize(d) for d in docs], k1=settings.retrieval.bm25_k1, b=settings.retrieval.bm25_b
    )
    total = sum(ndcg10(bm25.get_scores(tokenize(q)), i) for i, q in questions)
    value = total / len(questions)
    print(f"{name}: nDCG@10 {value:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="Questions (default: all).")
    args = parser.parse_args()
    data = json.loads((SHARED / "cmrc2018" / "cmrc2018_dev.json").read_text())
    paragraphs = [p for a in data["data"] for p in a["paragraphs"]]
    docs = [p["context"] for p in paragraphs]
    questions = [(i, qa["question"]) for i, p in enumerate(paragraphs) for qa in p["qas"]]
    questions = questions[: args.limit]
    print(f"{len(docs)} paragraphs, {len(questions)} questions")
    s2t = opencc.OpenCC("s2t")
    traditional = [s2t.convert(d) for d in docs]

    def without_folding(text: str) -> list[str]:
        # The product's tokenizer before OpenCC: bigrams of the text as written.
        saved = product._t2s
        product._t2s = lambda: _Identity()  # type: ignore[assignment,return-value]
        try:
            return product.tokenize(text)
        finally:
            product._t2s = saved

    results = {
        "bigrams (product)": run("bigrams (product)", product.tokenize, docs, questions),
        "traditional docs, no folding": run(
            "Traditional paragraphs, Simplified questions, bigrams without OpenCC",
            without_folding,
            traditional,
            questions,
        ),
        "traditional docs, t2s": run(
            "Traditional paragraphs, Simplified questions, bigrams with OpenCC t2s (product)",
            product.tokenize,
            traditional,
            questions,
        ),
    }
    try:
        import jieba

        jieba.setLogLevel(60)
        jieba.initialize()

        def with_jieba(text: str) -> list[str]:
            words = [
                w
                for w in jieba.lcut_for_search(product._t2s().convert(text))
                if len(w) > 1 and product._CJK_RUN.fullmatch(w)
            ]
            return product.tokenize(text) + ["w:" + w for w in words]

        def jieba_only(text: str) -> list[str]:
            return [
                w.lower()
                for w in jieba.lcut_for_search(product._t2s().convert(text))
                if w.strip() and any(c.isalnum() for c in w)
            ]

        results["bigrams + jieba words"] = run("bigrams + jieba words", with_jieba, docs, questions)
        results["jieba words only"] = run("jieba words only", jieba_only, docs, questions)
    except ImportError:
        print("jieba not installed: its variants skipped")
    print("summary:", "; ".join(f"{k} {v:.4f}" for k, v in results.items()))


class _Identity:
    def convert(self, text: str) -> str:
        return text


if __name__ == "__main__":
    main()
