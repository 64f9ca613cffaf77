"""Retrieval: the one module that talks to Qdrant (index schema, tenant-filtered reads and
writes), dense and BM25 encoders with per-tenant term statistics, hybrid queries with
reciprocal-rank fusion, and the second-stage reranker.
"""
