"""Processes of the platform a test starts beside itself, on the test's own database and Redis:
the gateway under uvicorn exactly as production serves it (`uvicorn gpucloud.asgi:application`)."""

from __future__ import annotations

import contextlib
import os
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


def process_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=django_settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="gpucloud.settings",
        GPUCLOUD_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def gateway_process(var_dir: Path) -> Iterator[GatewayProcess]:
    """uvicorn serving the platform on a loopback port (uvloop and httptools, one worker), ready
    when its /healthz answers; stopped (SIGTERM, then SIGKILL after 10 s) at the block's end."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "gpucloud.asgi:application", "--port", str(port),
               "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
    log_path = var_dir / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=process_env(var_dir), stdout=log, stderr=subprocess.STDOUT)
    served = GatewayProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_for(lambda: process.poll() is None and httpx.get(f"{served.url}/healthz", timeout=2).is_success,
                 60, f"the gateway process ({log_path})")  # fmt: skip
        yield served
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
