"""Ingestion: storing uploaded files per tenant (content-addressed), detecting their type,
parsing them with ``unstructured``, chunking with page and section metadata, writing the
``chunks`` rows, handing them to the retrieval index writer, and the task bodies
(``ingest.tasks``: processing and reaping, run by the task layer in-process or in Celery)
that move a document through its states with progress.
"""
