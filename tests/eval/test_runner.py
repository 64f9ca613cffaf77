"""The eval runner end to end on real parts (SQLite, the embedded index, the packaged
embedding model): a tiny BEIR set, a Chinese SQuAD set with answers, a SciFact subset when
the shared data is there; reports with embedded plots; stored runs and regressions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core import db as database
from core.models import EvalRun, EvalRunStatus
from core.settings import Settings
from eval.datasets import Dataset, load_beir, load_squad
from eval.runner import RunOptions
from eval.runs import compare, run_dataset
from services.container import Services
from tests.support.helpers import FIXTURE_DIR, SHARED_DATA

FIXTURES = FIXTURE_DIR / "eval"


def test_beir_run_writes_reports_stores_the_run_and_reuses_the_corpus(
    settings: Settings, db: database.Database, services: Services, tmp_path: Path
) -> None:
    data = load_beir(FIXTURES / "beir")
    out = tmp_path / "run1"
    seen: list[float] = []
    run_id, results = run_dataset(
        services, data, RunOptions(), out_dir=out, progress=lambda f, _: seen.append(f)
    )
    assert seen and seen[-1] == pytest.approx(1.0)
    modes = results["modes"]
    assert set(modes) == {"bm25", "dense", "hybrid", "hybrid+rerank", "rank_bm25", "dense-exact"}
    for entry in modes.values():
        assert 0.0 <= entry["ndcg@10"] <= 1.0 and "recall@100" in entry and "mrr@10" in entry
        assert entry["latency_ms"]["total"]["p95"] >= entry["latency_ms"]["total"]["p50"]
    assert modes["hybrid+rerank"]["ndcg@10"] > 0.9  # three easy questions
    assert results["corpus"]["documents"] == 6 and not results["corpus"]["reused"]
    assert "hybrid+rerank / rank_bm25" in results["ratios"]

    stored = json.loads((out / "results.json").read_text())
    assert stored["modes"]["bm25"]["ndcg@10"] == modes["bm25"]["ndcg@10"]
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4 and all(len(i) > 1000 for i in images)
    assert "Recall@k" in page and "dense-exact" in page
    markdown = (out / "report.md").read_text()
    assert "| hybrid+rerank (default) |" in markdown and (out / "plots" / "metrics.png").is_file()

    with db.session() as session:
        run = session.get(EvalRun, run_id)
        assert run is not None and run.status is EvalRunStatus.DONE
        assert run.results["modes"]["hybrid"]["ndcg@10"] == modes["hybrid"]["ndcg@10"]
        assert "per_query" not in run.results and run.report_path == str(out)

    # Same corpus again: reused, not re-indexed; compared with the first run.
    _, again = run_dataset(services, data, RunOptions(modes=["bm25"], baselines=False))
    assert again["corpus"]["reused"]
    assert again["comparison"]["previous_run"] == run_id
    assert again["comparison"]["regressions"] == []
    assert set(again["comparison"]["deltas"]) == {"bm25"}


def test_a_drop_beyond_the_tolerance_is_a_regression() -> None:
    before = {"modes": {"hybrid": {"ndcg@10": 0.72, "recall@100": 0.95}}, "answers": {}}
    now = {"modes": {"hybrid": {"ndcg@10": 0.70, "recall@100": 0.946}}}
    result = compare(now, before, tolerance=0.01, previous_id="r0")
    assert [(r["mode"], r["metric"]) for r in result["regressions"]] == [("hybrid", "ndcg@10")]
    assert result["deltas"]["hybrid"]["recall@100"] == pytest.approx(-0.004)


def test_chinese_squad_set_with_answers(
    settings: Settings, db: database.Database, services: Services
) -> None:
    data = load_squad(FIXTURES / "squad_zh.json")
    _, results = run_dataset(
        services, data, RunOptions(modes=["bm25", "hybrid+rerank"], answers=True)
    )
    assert results["modes"]["bm25"]["recall@10"] == pytest.approx(1.0)
    answers = results["answers"]
    assert answers["questions"] == 3 and answers["generator"]
    # The extractive generator answers with the paragraph's sentence: the gold answer's
    # characters are in it, so recall-heavy F1 is positive, exact match is not.
    assert answers["token_f1"] > 0.1 and answers["exact_match"] == 0.0
    assert answers["citation_precision"] == pytest.approx(1.0)
    assert 0.0 <= answers["refusal_rate"] <= 1.0
    assert answers["groundedness"] == pytest.approx(1.0)  # extractive: copied sentences
    assert answers["latency_ms"]["generate"]["p50"] >= 0


@pytest.mark.skipif(not (SHARED_DATA / "scifact").is_dir(), reason="needs ../shared/data/scifact")
def test_scifact_subset(settings: Settings, db: database.Database, services: Services) -> None:
    """30 SciFact test queries with their documents and 120 distractors."""
    full = load_beir(SHARED_DATA / "scifact", "test")
    queries = full.queries[:30]
    wanted = {d for q in queries for d in q.relevant}
    distractors = [p for p in full.passages if p not in wanted][:120]
    passages = {p: full.passages[p] for p in [*sorted(wanted), *distractors]}
    data = Dataset("scifact-subset", "passages", queries, passages)
    _, results = run_dataset(services, data, RunOptions(modes=["bm25", "hybrid+rerank"]))
    assert results["modes"]["bm25"]["ndcg@10"] > 0.6
    assert results["modes"]["hybrid+rerank"]["ndcg@10"] > 0.6
    assert results["modes"]["rank_bm25"]["ndcg@10"] > 0.5
