"""The task layer: the Celery app, every task name (written once, in ``tasks.names``), and
one queue interface with an in-process and a Celery implementation. Neutral: imports only
core; the packages that own task bodies (ingest, eval) register them here by name.
"""
