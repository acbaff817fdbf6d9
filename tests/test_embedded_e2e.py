"""`make run`'s entry point as a new user meets it: the real `manage.py serve` process (uvicorn
plus in-process Celery worker and beat, SQLite under a fresh var/), driven over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-e2e-password-42"
pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()  # type: ignore[operator]
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(GPUCLOUD_VAR_DIR=str(tmp_path), GPUCLOUD_HEARTBEAT_SECONDS="1", PYTHONUNBUFFERED="1")
    for command in (["migrate", "--noinput", "-v0"], ["load_catalog"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=120)
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "the server")
        yield base, tmp_path, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def _csrf(client: httpx.Client, path: str) -> str:
    client.get(path)
    return client.cookies["csrftoken"]


def _mail_matching(var_dir: Path, pattern: str) -> re.Match[str] | None:
    for path in sorted((var_dir / "mail").glob("*.log")):
        match = re.search(pattern, path.read_text())
        if match:
            return match
    return None


def test_new_user_journey_and_clean_shutdown(server: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, var_dir, process = server

    # Beat schedules the heartbeat and the in-process worker runs it.
    _wait_for(
        lambda: httpx.get(f"{base}/healthz").json()["worker_heartbeat_age_seconds"] is not None, 20, "a heartbeat"
    )

    browser = httpx.Client(base_url=base, timeout=10)
    token = _csrf(browser, "/accounts/signup/")
    signup = browser.post(
        "/accounts/signup/",
        data={"csrfmiddlewaretoken": token, "email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert signup.status_code == 302 and signup.headers["location"] == "/accounts/confirm-email/"

    link = _mail_matching(var_dir, r"http://[^\s]+(/accounts/confirm-email/[^\s]+/)")
    assert link, "the verification email is saved under var/mail/"
    confirm = browser.post(link.group(1), data={"csrfmiddlewaretoken": _csrf(browser, link.group(1))})
    assert confirm.status_code == 302
    assert browser.get("/dashboard/").status_code == 200  # signed in after confirming

    created = browser.post(
        "/api/v1/api-keys", json={"name": "e2e"}, headers={"X-CSRFToken": browser.cookies["csrftoken"]}
    )
    assert created.status_code == 201
    key = created.json()["key"]

    me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["user"]["email"] == "new@example.com"
    org_id = me.json()["current_organization"]["id"]

    # A web request enqueues a task on the in-memory broker; the in-process worker sends the mail.
    invite = httpx.post(
        f"{base}/api/v1/orgs/{org_id}/invitations",
        json={"email": "teammate@example.com", "role": "member"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert invite.status_code == 201
    _wait_for(lambda: _mail_matching(var_dir, r"invited you to join"), 15, "the invitation email")

    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    assert process.wait(timeout=30) == 0
    log = (var_dir / "serve.log").read_text()
    assert "Embedded Celery worker and beat stopped" in log
