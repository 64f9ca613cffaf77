"""Tests of generation/: answers, citations, prompts, the LLM client, the query log."""
