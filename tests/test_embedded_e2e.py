"""`make run`'s entry point as a new user meets it: the real `manage.py serve` process (uvicorn
plus in-process Celery worker and beat, SQLite under a fresh var/), driven over HTTP."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.embedded import PASSWORD, embedded_server, engines, mail_matching, manage, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    with embedded_server(tmp_path) as embedded:
        yield embedded.base, embedded.var_dir, embedded.process


def _follow_live_updates(base: str, session_id: str) -> list[dict[str, str]]:
    """Open the pages' websocket as the signed-in browser does and collect what it pushes."""

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


@pytest.mark.slow
def test_new_user_journey_and_clean_shutdown(server: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base, var_dir, process = server

    # Beat schedules the heartbeat and the in-process worker runs it.
    wait_for(lambda: httpx.get(f"{base}/healthz").json()["worker_heartbeat_age_seconds"] is not None, 20, "a heartbeat")

    browser = httpx.Client(base_url=base, timeout=10)
    token = _csrf(browser, "/accounts/signup/")
    signup = browser.post(
        "/accounts/signup/",
        data={"csrfmiddlewaretoken": token, "email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert signup.status_code == 302 and signup.headers["location"] == "/accounts/confirm-email/"

    link = mail_matching(var_dir, r"http://[^\s]+(/accounts/confirm-email/[^\s]+/)")
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
    wait_for(lambda: mail_matching(var_dir, r"invited you to join"), 15, "the invitation email")

    # Deploy SmolLM2 on this machine, talk to it, delete it (the fleet issue's "done when").
    granted = manage(["grant_credit", "new@example.com", "5", "--reason", "e2e"], var_dir)
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
    wait_for(lambda: httpx.get(deployment, headers=auth).json()["status"] == "active", 60, "an active deployment")

    # The in-process worker made the change; the in-memory channel layer carried it to the socket.
    def changes() -> list[dict[str, str]]:  # status pushes, besides the balance's
        return [p for p in pushes if p["type"] == "deployment.changed"]

    wait_for(lambda: "active" in [p["status"] for p in changes()], 10, "the live 'active' push")
    assert {p["deployment_id"] for p in changes()} == {created.json()["id"]}
    print(f"\ndeployment active after {time.monotonic() - started:.1f} s")
    answer = httpx.post(
        f"{deployment}/chat/completions",
        json={"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 16},
        headers=auth,
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"].strip()
    assert engines() != []
    assert httpx.delete(deployment, headers=auth).status_code == 200
    wait_for(lambda: httpx.get(deployment, headers=auth).json()["status"] == "stopped", 30, "a stopped deployment")
    assert engines() == []
    usage = httpx.get(f"{base}/api/v1/billing/transactions?kind=usage", headers=auth).json()["data"]
    assert usage and sum(-t["amount_usd"] for t in usage) >= (50_000 * 60 // 3600) / 1_000_000  # 60 s at $0.05/h

    # A second deployment is left running: Ctrl-C must stop its engine too.
    httpx.post(
        f"{base}/api/v1/deployments",
        json={"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local"},
        headers=auth,
    )
    wait_for(lambda: engines() != [], 30, "a second engine")

    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    assert process.wait(timeout=30) == 0
    log = (var_dir / "serve.log").read_text()
    assert "Embedded Celery worker and beat stopped" in log
    assert engines() == []  # no process left behind
    # The chat's request metrics outlive the process (without Redis they were only in memory).
    with sqlite3.connect(var_dir / "gpucloud.sqlite3") as db:
        (requests,) = db.execute(
            "SELECT COALESCE(SUM(requests), 0) FROM deployments_requestminute WHERE deployment_id = ?",
            (created.json()["id"],),
        ).fetchone()
    assert requests >= 1


@pytest.mark.slow
def test_sigterm_stops_the_platform_and_its_engines_as_ctrl_c_does(
    server: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    """What `kill`, systemd and container runtimes send: uvicorn re-raises it after its own shutdown,
    which by default ends the process before the engines are stopped."""
    base, var_dir, process = server
    made = manage(["create_user", "term@example.com", "--credit", "5", "--api-key", "term"], var_dir)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    created = httpx.post(
        f"{base}/api/v1/deployments",
        json={"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201, created.text
    wait_for(lambda: engines() != [], 30, "an engine")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "Embedded Celery worker and beat stopped" in (var_dir / "serve.log").read_text()
    assert engines() == []
