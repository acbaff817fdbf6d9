"""`make run`'s entry point as a new user meets it: the real `manage.py serve` process (uvicorn
plus in-process Celery worker and beat, SQLite under a fresh var/), driven over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-e2e-password-42"
TAG = f"gpucloud-e2e-{os.getpid()}"
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
    env.update(
        GPUCLOUD_VAR_DIR=str(tmp_path),
        GPUCLOUD_HEARTBEAT_SECONDS="1",
        PYTHONUNBUFFERED="1",
        GPUCLOUD_FLEET_TAG=TAG,
        GPUCLOUD_LOCAL_THREADS="1",
    )
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
        for pid in _engines():  # a failed run must not leave engines behind
            os.kill(int(pid), signal.SIGKILL)


def _manage(args: list[str], var_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["GPUCLOUD_VAR_DIR"] = str(var_dir)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def _engines() -> list[str]:
    """Engine processes started by this test's server (their command lines carry the instances dir's ids)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"catalog.providers.local.engine" in argv and TAG.encode() in argv:
            found.append(entry.name)
    return found


def _follow_live_updates(base: str, session_id: str) -> list[dict[str, str]]:
    """Open the pages' websocket as the signed-in browser does and collect what it pushes."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    received: list[dict[str, str]] = []
    socket_url = base.replace("http://", "ws://") + "/ws/org/"
    connection = connect(socket_url, additional_headers={"Cookie": f"sessionid={session_id}", "Origin": base},
                         open_timeout=10)  # fmt: skip

    def listen() -> None:
        with connection, contextlib.suppress(ConnectionClosed):  # the server stops at the end of the test
            for message in connection:
                received.append(json.loads(message))

    threading.Thread(target=listen, daemon=True).start()
    return received


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

    # Deploy SmolLM2 on this machine, talk to it, delete it (the fleet issue's "done when").
    granted = _manage(["grant_credit", "new@example.com", "5", "--reason", "e2e"], var_dir)
    assert granted.returncode == 0, granted.stderr
    auth = {"Authorization": f"Bearer {key}"}
    pushes = _follow_live_updates(base, browser.cookies["sessionid"])  # the signed-in browser's websocket
    created = httpx.post(
        f"{base}/api/v1/deployments",
        json={"name": "e2e", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    deployment = f"{base}/api/v1/deployments/{created.json()['id']}"
    started = time.monotonic()
    _wait_for(lambda: httpx.get(deployment, headers=auth).json()["status"] == "active", 60, "an active deployment")
    # The in-process worker made the change; the in-memory channel layer carried it to the socket.
    _wait_for(lambda: "active" in [p["status"] for p in pushes], 10, "the live 'active' push")
    assert {p["deployment_id"] for p in pushes} == {created.json()["id"]}
    print(f"\ndeployment active after {time.monotonic() - started:.1f} s")
    answer = httpx.post(
        f"{deployment}/chat/completions",
        json={"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 16},
        headers=auth,
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"].strip()
    assert _engines() != []
    assert httpx.delete(deployment, headers=auth).status_code == 200
    _wait_for(lambda: httpx.get(deployment, headers=auth).json()["status"] == "stopped", 30, "a stopped deployment")
    assert _engines() == []
    usage = httpx.get(f"{base}/api/v1/billing/transactions?kind=usage", headers=auth).json()["data"]
    assert usage and sum(-t["amount_usd"] for t in usage) >= (50_000 * 60 // 3600) / 1_000_000  # 60 s at $0.05/h

    # A second deployment is left running: Ctrl-C must stop its engine too.
    httpx.post(
        f"{base}/api/v1/deployments",
        json={"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local"},
        headers=auth,
    )
    _wait_for(lambda: _engines() != [], 30, "a second engine")

    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    assert process.wait(timeout=30) == 0
    log = (var_dir / "serve.log").read_text()
    assert "Embedded Celery worker and beat stopped" in log
    assert _engines() == []  # no process left behind
