"""Tests of ingest/: parsing, chunking, the shared corpus, hostile uploads, backup and restore."""
