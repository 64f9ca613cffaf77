"""Ingestion: storing uploaded files per tenant (content-addressed), detecting their type,
parsing them with ``unstructured``, chunking with page and section metadata, writing the
``chunks`` rows, handing them to the retrieval index writer, and the tasks (in-process or
Celery) that move a document through its states with progress.
"""
