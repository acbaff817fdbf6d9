"""Platform processes of the distributed topology started by tests against the test's own database
and Redis: the environment they need, and a web process (uvicorn serving the ASGI app) to kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from django.conf import settings as django_settings
from django.db import connection

from tests.support.embedded import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """This test's database (pytest-django's test_<name>), for another process to use the same rows."""
    db = connection.settings_dict
    credentials = f"{quote(db['USER'])}:{quote(db['PASSWORD'])}"
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{quote(db['NAME'])}"


def platform_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The distributed topology on the test's database and Redis, tasks sent to the broker."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=django_settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="gpucloud.settings",
        CELERY_TASK_ALWAYS_EAGER="0",
        GPUCLOUD_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@dataclass
class Web:
    base: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL: nothing of the process runs after it (no shutdown, no on-commit callback)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@contextlib.contextmanager
def web_process(var_dir: Path, **env: str) -> Iterator[Web]:
    """`uvicorn gpucloud.asgi:application` (one web process of the distributed topology), serving
    once /healthz answers; killed at the end if the test has not killed it."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "gpucloud.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with (var_dir / "web.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=platform_env(var_dir, **env), stdout=log, stderr=log)
        web = Web(f"http://127.0.0.1:{port}", process)
        try:
            wait_for(lambda: httpx.get(f"{web.base}/healthz", timeout=2).status_code == 200, 60, "the web process")
            yield web
        finally:
            if process.poll() is None:
                web.kill()
