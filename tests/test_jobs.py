"""Work is enqueued by registered task name (gpucloud.core.jobs): every name the code enqueues or
beat schedules is a registered task, and no application module imports a tasks module (tests may,
to run a task directly)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

from gpucloud.celery import app
from gpucloud.core import jobs

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("accounts", "billing", "catalog", "deployments", "fleet", "gateway", "gpucloud", "pages", "webhooks")


def sources() -> list[Path]:
    return [p for package in APP_PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def task_names_in_code() -> set[str]:
    """String arguments of enqueue()/send() calls, and constants whose names end in _TASK."""
    names = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("enqueue", "send") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and _names_a_task(node):
                names.add(str(node.value.value))
    return names


def _names_a_task(assign: ast.Assign) -> bool:
    return any(isinstance(target, ast.Name) and target.id.endswith("_TASK") for target in assign.targets)


def test_every_enqueued_or_scheduled_name_is_a_registered_task() -> None:
    enqueued = task_names_in_code()
    scheduled = {str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "fleet.tasks.instance_provision_task" in enqueued  # the scan finds the calls
    missing = sorted(name for name in enqueued | scheduled if name not in app.tasks)
    assert missing == []


def test_no_module_imports_a_tasks_module() -> None:
    offenders = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(m.split(".")[-1] == "tasks" for m in modules) and path.name != "tasks.py":
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_an_unknown_task_name_fails_loudly() -> None:
    with pytest.raises(KeyError):
        jobs.send("fleet.tasks.no_such_task")
