"""The process's assembled parts and the services built on them.

``container`` builds one :class:`~services.container.Services` per process from
``Settings`` (database, index and embedders, reranker, generator, task queue); the API, the
CLI, the workers and the tests get theirs from it; ``worker`` is a Celery worker process's
app, whose task bodies get that process's Services. ``answering`` is the one answer path
(search -> sources -> generate -> citations) that the API, the CLI, the chat bots and eval
all call. Imports core, tasks, retrieval and generation; never ingest, eval or api (task
bodies are found by module name, as Celery's ``include`` does).
"""
