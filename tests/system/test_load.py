"""A short load test (issue #9): a real ``ragkb serve`` on PostgreSQL and Redis, four
clients asking questions while one uploads real files, for a few seconds.

Nothing may fail (no transport error, no 5xx, no other non-2xx answer), every uploaded
document must reach ``ready``, and the server's memory must not balloon. The long form,
with its numbers, is ``bench/load_test.py`` (two minutes, 8 + 2 clients).

It takes 30–55 s on the shared 2-core machine (the server's start, loading torch and the
embedding model, is most of it under load), so it runs only with RAGKB_SLOW_TESTS=1;
``tests/system/test_load_short.py`` is the in-thread short form the default suite runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.common import SHARED_DATA
from bench.load_test import run_load

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("RAGKB_SLOW_TESTS") != "1", reason="RAGKB_SLOW_TESTS!=1 (30-55 s)"
    ),
]

DURATION_S = float(os.environ.get("RAGKB_LOAD_TEST_S", "20"))
# Loading the parsers (unstructured, its per-format libraries) and the models happens during
# the run; a leak would show as far more than this.
RSS_GROWTH_BOUND_MIB = 1024
# A few small files of different types that parse
# (see tests/support/fixtures/shared_docs_outcomes.tsv).
FILES = [
    SHARED_DATA / "docs" / name
    for name in (
        "README.md",
        "book-war-and-peace-1p.txt",
        "example-10k-1p.html",
        "docx-tables.docx",
        "csv-with-long-lines.csv",
        "README.rst",
        "codeblock.md",
        "category-level.docx",
    )
]


@pytest.mark.skipif(not all(p.exists() for p in FILES), reason="shared data is missing")
def test_queries_and_uploads_under_load_never_fail(tmp_path: Path) -> None:
    result = run_load(
        tmp_path, duration_s=DURATION_S, query_clients=4, uploaders=1, passages=0, files=FILES
    )
    query, uploads, rss = result["query"], result["uploads"], result["rss"]
    assert result["errors"] == 0, (query["errors"], uploads["errors"])
    assert set(query["status"]) == {"200"}, query["status"]
    assert query["ok"] > 0
    assert uploads["uploads"] >= 1 and uploads["ready"] == uploads["uploads"], uploads
    assert rss["rss_peak_mib"] - rss["rss_start_mib"] < RSS_GROWTH_BOUND_MIB, rss
