"""Offline evaluation: dataset loaders, retrieval and answer metrics, runners and the
reports (JSON, Markdown, HTML with plots) that compare modes and runs.

- ``datasets``: BEIR, SQuAD-style and tenant question sets (CSV/JSONL) as one ``Dataset``.
- ``corpus``: the throw-away tenant a data set is indexed into (reused while unchanged),
  or a tenant's own documents; judgements keyed by document.
- ``metrics``: ranking metrics through ``ir-measures``; token F1/EM (CJK-aware), citation
  precision/recall, latency percentiles. ``groundedness``: the supported share of answers.
- ``runner``: every question in every mode on the real query path, plus plain baselines.
- ``report``: ``results.json``, ``report.md``, ``report.html`` and plots.
- ``runs``: stored runs (``eval_runs``), comparison with the previous run, the run body.
- ``tasks``: the run's task body (``TaskName.EVAL_RUN``), registered with the task layer.
"""
