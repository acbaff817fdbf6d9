"""The platform's ASGI app in processes of its own, as the distributed topology runs it: uvicorn
servers (one or several workers behind one port) sharing this test's PostgreSQL database and Redis.
For tests of what must hold across processes (revocation, concurrency limits, metering, a crash)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import redis
from django.conf import settings
from django.db import connection

from gateway import access_listener
from tests.support.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60  # for every worker to import Django on a slow, busy CI machine


def database_url() -> str:
    """This test's database (pytest-django's test_<name>), for another process to use the same rows."""
    db = connection.settings_dict
    credentials = f"{quote(db['USER'])}:{quote(db['PASSWORD'])}"
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{quote(db['NAME'])}"


def platform_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The distributed topology on this test's database and Redis (plus `extra` variables)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="gpucloud.settings",
        GPUCLOUD_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@dataclass
class LoggedProcess:
    """A process of the platform started by a test, its output in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the process exited ({self.process.returncode}):\n{self.log[-6000:]}")


@dataclass
class Gateway(LoggedProcess):
    url: str = ""
    workers: int = 1

    def kill(self) -> None:
        """SIGKILL: nothing of the process runs after it (no shutdown, no on-commit callback)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", self.log)]


@contextlib.contextmanager
def gateway_process(var_dir: Path, *, workers: int = 1, name: str = "gateway", **env: str) -> Iterator[Gateway]:
    """`uvicorn gpucloud.asgi:application` on a free loopback port, with `workers` worker
    processes and `env` added to the platform's; yields once every worker has started. Stopped (and
    its workers with it) at the end, unless the test killed it."""
    port = free_port()
    log_path = var_dir / f"{name}.log"
    command = [sys.executable, "-m", "uvicorn", "gpucloud.asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--log-level", "info", "--no-access-log"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=platform_env(var_dir, **env), stdout=log, stderr=subprocess.STDOUT
        )
    gateway = Gateway(process, log_path, f"http://127.0.0.1:{port}", workers)
    try:
        deadline = time.monotonic() + START_SECONDS
        while gateway.log.count("Application startup complete") < workers:
            gateway.check_alive()
            assert time.monotonic() < deadline, f"the gateway did not start in {START_SECONDS} s:\n{gateway.log}"
            time.sleep(0.1)
        yield gateway
    finally:
        process.terminate()  # uvicorn's parent stops its workers on SIGTERM
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def listening() -> set[int]:
    """The pids of the processes whose gateway listens for access changes (on this Redis server)."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    try:
        prefix = f"{access_listener.CLIENT_NAME}-"
        return {int(c["name"].removeprefix(prefix)) for c in client.client_list()
                if c["name"].startswith(prefix) and int(c["sub"])}  # fmt: skip
    finally:
        client.close()


def get(url: str, key: str, path: str = "/v1/models") -> httpx.Response:
    """One request on a connection of its own, so that behind one port any worker may take it."""
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}", "Connection": "close"}, timeout=30)
