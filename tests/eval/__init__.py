"""Tests of eval/: data sets, metrics, groundedness and the runner."""
