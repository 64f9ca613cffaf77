"""A Celery worker process: the task layer's Celery app, whose task bodies get this
process's ``Services``, built once per worker process on its first task (prefork children
each build their own) from the worker's settings. ``ragkb worker`` runs it;
``celery -A services.worker worker`` works too.
"""

from __future__ import annotations

from celery import Celery

from core.settings import Settings, get_settings
from services.container import Services, build_services
from tasks.celery_app import make_celery
from tasks.queue import CeleryQueue


def make_worker_app(settings: Settings) -> Celery:
    def services_for(app: Celery) -> Services:
        services = build_services(settings)
        # Follow-up tasks (documents the reaper queues again) go out through this app.
        services.task_queue = CeleryQueue(settings, app)
        return services

    return make_celery(settings, context=services_for)


# For `celery -A services.worker worker`.
app = make_worker_app(get_settings()) if get_settings().tasks.mode == "celery" else None
