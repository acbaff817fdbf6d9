"""Background work, enqueued by its registered task name after the current transaction commits.

This is the one module that reaches tasks: everything else names them ("fleet.tasks.
instance_provision_task"), so no module imports a tasks module and task modules stay at the top of
the import graph (they import services, never the other way). Celery discovers every installed app's
tasks module when Django is ready (gpucloud.apps), so a name resolves in the web process as in a worker;
tests/test_jobs.py checks that every name enqueued anywhere in the code is registered.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction


def enqueue(name: str, *args: Any, countdown: float | None = None) -> None:
    """Run task `name` with `args` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(name, *args, countdown=countdown))


def send(name: str, *args: Any, countdown: float | None = None) -> None:
    """Run task `name` now, not waiting for a commit (for callers outside any transaction, or
    work that must go out even if the transaction rolls back). An unknown name raises KeyError."""
    task = current_app.tasks[name]
    if countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args, countdown=countdown)
