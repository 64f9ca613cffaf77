"""Task bodies, registered by name by the packages that own the work.

A body lives with its work (``ingest.tasks``, ``eval.tasks``) and registers itself with
:func:`task` when its module is imported. The task layer finds the modules by the names in
:data:`TASK_MODULES`, as Celery's ``include`` does, so it never imports the packages above
it. A body is called as ``body(context, *args)``: ``context`` is the process's services
(typed ``Any`` here, below them), built once per process by whoever runs the tasks; a body
with a :class:`Retry` policy also gets ``final_attempt`` (on its last attempt it records
the failure instead of raising).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from core.settings import Settings
from tasks.names import TaskName

# Imported for their @task registrations by whoever runs tasks (a worker, the in-process
# queue); a sender needs only the names.
TASK_MODULES = ("ingest.tasks", "eval.tasks")

Body = TypeVar("Body", bound=Callable[..., Any])


@dataclass(frozen=True)
class Retry:
    """Attempt again after one of ``on``, up to ``times(settings)`` more times, with
    exponential backoff."""

    on: tuple[type[Exception], ...]
    times: Callable[[Settings], int]


@dataclass(frozen=True)
class Task:
    name: TaskName
    body: Callable[..., Any]
    retry: Retry | None = None
    # Run once by an in-process queue as it starts, before it takes tasks: the tasks of
    # this name that a previous process held in its memory are gone. Best effort (must not
    # raise): the database may not be reachable yet.
    recover: Callable[[Any], object] | None = None

    def run(
        self,
        context: Any,
        settings: Settings,
        *args: Any,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        """Call the body here, attempting again after one of its retry errors with
        exponential backoff, until ``stopped()`` (the in-process queue, ``ragkb ingest``;
        Celery runs its own retries)."""
        retry = self.retry
        attempts = 1 + (retry.times(settings) if retry else 0)
        retry_on = retry.on if retry else ()
        for attempt in range(attempts):
            if stopped():
                return
            try:
                if retry is None:
                    self.body(context, *args)
                else:
                    self.body(context, *args, final_attempt=attempt == attempts - 1)
                return
            except retry_on:
                time.sleep(min(2**attempt, 30))


_tasks: dict[TaskName, Task] = {}


def task(
    name: TaskName, *, retry: Retry | None = None, recover: Callable[[Any], object] | None = None
) -> Callable[[Body], Body]:
    """Register the decorated function as the body of task ``name``."""

    def register(body: Body) -> Body:
        known = _tasks.get(name)
        if known is not None and _where(known.body) != _where(body):
            raise ValueError(f"task {name} has two bodies: {_where(known.body)}, {_where(body)}")
        _tasks[name] = Task(name, body, retry, recover)
        return body

    return register


def registered() -> dict[TaskName, Task]:
    """Every task's registration (their modules imported first); each name has one."""
    for module in TASK_MODULES:
        importlib.import_module(module)
    missing = sorted(set(TaskName) - set(_tasks))
    if missing:
        raise RuntimeError(f"no body registered for {', '.join(missing)}")
    return dict(_tasks)


def registration(name: TaskName) -> Task:
    """Task ``name``'s registration, importing task modules only until it is found."""
    for module in TASK_MODULES:
        if name in _tasks:
            break
        importlib.import_module(module)
    if name not in _tasks:
        raise RuntimeError(f"no body registered for {name}")
    return _tasks[name]


def _where(body: Callable[..., Any]) -> str:
    return f"{body.__module__}.{body.__qualname__}"
