"""`make run`'s entry point as a new user meets it, for the end-to-end and browser tests: the real
`manage.py serve` process (uvicorn plus in-process Celery worker and beat, SQLite under a fresh
var/), and what the tests read around it (its mail folder, its engine processes)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-e2e-password-42"
TAG = f"gpucloud-e2e-{os.getpid()}"


@dataclass
class Embedded:
    base: str
    var_dir: Path
    process: subprocess.Popen[str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _env(var_dir: Path) -> dict[str, str]:
    """The user's environment without the test suite's database and Redis: `make run` defaults."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["GPUCLOUD_VAR_DIR"] = str(var_dir)
    return env


@contextlib.contextmanager
def embedded_server(var_dir: Path) -> Iterator[Embedded]:
    env = _env(var_dir)
    env.update(GPUCLOUD_HEARTBEAT_SECONDS="1", PYTHONUNBUFFERED="1", GPUCLOUD_FLEET_TAG=TAG,
               GPUCLOUD_LOCAL_THREADS="1")  # fmt: skip
    for database_file in _migrated_database(env).glob("gpucloud.sqlite3*"):
        shutil.copy(database_file, var_dir)
    port = free_port()
    log = (var_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "the server")
        yield Embedded(base, var_dir, process)
    except BaseException:
        # A failing test shows what the server did: CI keeps nothing else of the run.
        log.flush()
        tail = (var_dir / "serve.log").read_text(errors="replace")[-12_000:]
        print(f"\n--- last of {var_dir / 'serve.log'} ---\n{tail}")
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
        for pid in engines():  # a failed run must not leave engines behind
            os.kill(int(pid), signal.SIGKILL)


def _migrated_database(env: dict[str, str]) -> Path:
    """A folder holding the SQLite database `make run` makes (migrated, catalog loaded), made once
    per state of the migrations, catalog and settings for every test process of the run and
    copied for each server: migrating anew took each server 4-6 s. A file lock keeps pytest-xdist's
    workers from making it twice."""
    made_by = [ROOT / "gpucloud/management/commands/load_catalog.py", ROOT / "gpucloud/settings.py"]
    sources = sorted([*ROOT.glob("*/migrations/*.py"), *ROOT.glob("catalog/*.py"), *made_by])
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    digest.update(repr(sorted((k, v) for k, v in env.items() if k.startswith("GPUCLOUD_LOCAL"))).encode())
    folder = Path(tempfile.gettempdir()) / f"gpucloud-embedded-db-{digest.hexdigest()[:16]}"
    folder.mkdir(exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "ready").exists():
            for database_file in folder.glob("gpucloud.sqlite3*"):  # a half-made one from a killed run
                database_file.unlink()
            made = {**env, "GPUCLOUD_VAR_DIR": str(folder)}
            for command in (["migrate", "--noinput", "-v0"], ["load_catalog"]):
                subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=made, check=True, timeout=120)
            (folder / "ready").touch()
    return folder


def manage(args: list[str], var_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=_env(var_dir), capture_output=True, text=True, timeout=60
    )


def engines() -> list[str]:
    """Engine processes started by this run's servers (their command lines carry the fleet tag)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fleet.providers.local.engine" in argv and TAG.encode() in argv:
            found.append(entry.name)
    return found


def mail_matching(var_dir: Path, pattern: str) -> re.Match[str] | None:
    for path in sorted((var_dir / "mail").glob("*.log")):
        match = re.search(pattern, path.read_text())
        if match:
            return match
    return None
