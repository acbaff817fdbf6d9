"""Settings every test runs under, and the shared fixtures, which live in tests/support/ (plugins
registered here; test modules import their helpers from tests.support, never from a conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import channel_layers
from django.core.cache import cache

from deployments import tasks as deployment_tasks
from fleet import tasks as fleet_tasks
from gpucloud.celery import app

pytest_plugins = [
    "tests.support.personas",
    "tests.support.fleet",
    "tests.support.gateway",
    "tests.support.stripe",
    "tests.support.webhooks",
    "tests.support.cloud_tally",
]


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Django's advice for test speed: PBKDF2's million rounds cost ~0.25 s per persona and sign-in,
    # and no test is about the hash's strength (the served platform keeps the default).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    app.conf.task_always_eager = True


@pytest.fixture(autouse=True)
def _short_task_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks that wait for an engine to load or a replica to drain poll every half second; eager in
    the test's thread, each poll that finds it not done yet held the test that long. The tests are
    about what the polls find, not how often they look."""
    monkeypatch.setattr(fleet_tasks, "READY_POLL_SECONDS", 0.05)
    monkeypatch.setattr(deployment_tasks, "DRAIN_POLL_SECONDS", 0.05)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Any:
    """Each test gets its own channel layer instance: a Redis layer keeps receive state for the event
    loop that used it (one loop per web process in production; one per asyncio.run in tests)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _clear_cache() -> Any:
    """allauth's rate limits count in the cache; every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests run first. `make test` hands whole modules to two workers
    (--dist loadfile, without xdist's reordering by test count): a long module handed out last
    would keep one worker busy alone while the other waits at the end."""
    slow = {item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in slow)  # stable: order kept inside
