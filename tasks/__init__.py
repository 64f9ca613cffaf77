"""The task layer: every task name (written once, in ``tasks.names``), the registry the
packages that own task bodies (``ingest.tasks``, ``eval.tasks``) fill by name
(``tasks.registry``), the Celery app and its configuration (``tasks.celery_app``), and one
queue interface with an in-process and a Celery implementation (``tasks.queue``). Neutral:
imports only core; it finds the bodies' modules by name, as Celery's ``include`` does.
"""
