"""Tests of retrieval/: BM25, search, the index engines (one conformance suite) and rebuilds."""
