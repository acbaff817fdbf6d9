"""Issue 17: a pod's HTTP ports through the platform's own proxy, /pods/{id}/ports/{port}/..., served
by the real ASGI app in front of a real local pod: a signed-in member or the pod's token passes, with
the platform's cookies kept from the pod and the pod's cookies kept to its path; websockets too; no
one else learns the pod exists."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from accounts.models import Membership
from accounts.roles import Role
from deployments.models import Pod
from deployments.pod_access import PortTarget
from deployments.pod_activity import pod_last_request
from gateway import pod_proxy
from tests.support.billing import fund
from tests.support.gateway import asgi_request
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # the server thread must see committed rows
USD = 1_000_000
# The pod's own server: on 8080 an HTTP echo (what arrived, and a cookie set at "/"), on 8081 a
# websocket echo; both from the platform's Python, read-only in the sandbox.
SERVER = """
import http.server, json, os, threading
from websockets.sync.server import serve
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.answer(b"")
    def do_POST(self): self.answer(self.rfile.read(int(self.headers.get("content-length") or 0)))
    def answer(self, body):
        out = json.dumps({"path": self.path, "method": self.command, "body_bytes": len(body),
                          "cookie": self.headers.get("cookie"), "prefix": self.headers.get("x-forwarded-prefix"),
                          "token_header": self.headers.get("x-gpucloud-pod-token")}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("set-cookie", "podcookie=1; Path=/"); self.send_header("set-cookie", "sessionid=evil; Path=/")
        self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *args): pass
def echo(ws):
    for message in ws: ws.send("echo:" + message)
threading.Thread(target=serve(echo, "127.0.0.1", int(os.environ["PORT_8081"])).serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT_8080"])), Echo).serve_forever()
"""
POD = {"name": "web", "image": "gpucloud/shell", "gpu_type": "cpu", "region": "local",
       "command": ["python3", "-c", SERVER], "ports": ["8080/http", "8081/http", "22/tcp"]}  # fmt: skip


def running_pod(client: Client, persona: Persona, capture: Any, server: str) -> tuple[str, str]:
    """A pod serving its ports; its id and proxy token."""
    fund(persona.org, 10 * USD)
    with capture(execute=True):
        created = client.post("/api/v1/pods", data=json.dumps(POD), content_type="application/json", **persona.auth)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    deadline = time.monotonic() + 20
    token = Pod.objects.get(pk=pod_id).proxy_token
    first_page = f"{server}/pods/{pod_id}/ports/8080/"
    while time.monotonic() < deadline:  # until its server listens
        pod_proxy.decisions_clear()
        if httpx.get(first_page, headers={"x-gpucloud-pod-token": token}).status_code == 200:
            return pod_id, token
        time.sleep(0.1)
    raise AssertionError("the pod's server never answered through the proxy")


def session_of(persona: Persona) -> str:
    client = Client()
    client.force_login(persona.user)
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def test_a_member_reaches_the_pods_port_and_the_platforms_cookies_stay_out(
    server: str, client: Client, alice: Persona, bob: Persona, charlie: Persona, fleet: str,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    pod_id, _token = running_pod(client, alice, django_capture_on_commit_callbacks, server)
    base = f"{server}/pods/{pod_id}/ports/8080"
    jar = {settings.SESSION_COOKIE_NAME: session_of(alice), settings.CSRF_COOKIE_NAME: "c" * 32, "theme": "dark"}

    answer = httpx.post(f"{base}/api/contents?type=file", content=b"x" * 1_000_000, cookies=jar)
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["path"] == f"/pods/{pod_id}/ports/8080/api/contents?type=file"  # the whole path: apps serve under it
    assert (seen["method"], seen["body_bytes"]) == ("POST", 1_000_000)
    assert seen["cookie"] == "theme=dark"  # the session and CSRF cookies never reach the pod
    assert seen["prefix"] == f"/pods/{pod_id}/ports/8080"
    assert answer.headers.get_list("set-cookie") == [f"podcookie=1; Path=/pods/{pod_id}/ports/8080/"]  # no sessionid
    assert pod_last_request(pod_id) is not None  # a request through the proxy is activity (the idle round reads it)

    bare = httpx.get(f"{base}/")
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
    pod_proxy.decisions_clear()
    for stranger in (charlie, bob):  # another org's member; a viewer of the pod's org
        if stranger is bob:
            Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
        refused = httpx.get(f"{base}/", cookies={settings.SESSION_COOKIE_NAME: session_of(stranger)})
        assert refused.status_code == 404 and refused.json()["error"]["message"] == f"No pod {pod_id!r}."
    nowhere = httpx.get(f"{server}/pods/pod_nope/ports/8080/", cookies=jar)
    assert nowhere.status_code == 404 and nowhere.json()["error"]["message"] == "No pod 'pod_nope'."
    tcp = httpx.get(f"{server}/pods/{pod_id}/ports/22/", cookies=jar)
    assert tcp.status_code == 404 and "exposes no HTTP port 22" in tcp.json()["error"]["message"]
    slashless = httpx.get(base, cookies=jar)
    assert slashless.status_code == 307 and slashless.headers["location"] == f"/pods/{pod_id}/ports/8080/"


def test_the_pods_token_opens_it_once_then_as_a_cookie_of_its_path(
    server: str, client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    pod_id, token = running_pod(client, alice, django_capture_on_commit_callbacks, server)
    base = f"{server}/pods/{pod_id}/ports/8080"
    handed = httpx.get(f"{base}/lab?gpucloud_token={token}&tab=1")
    assert handed.status_code == 307 and handed.headers["location"] == f"/pods/{pod_id}/ports/8080/lab?tab=1"
    cookie = handed.headers["set-cookie"]
    assert cookie.startswith(f"gpucloud_pod_token={token}; Path=/pods/{pod_id}/ports/8080/; HttpOnly")
    with httpx.Client(base_url=server, cookies={"gpucloud_pod_token": token}) as browser:
        followed = browser.get(f"/pods/{pod_id}/ports/8080/lab?tab=1")
        assert followed.status_code == 200 and followed.json()["path"] == f"/pods/{pod_id}/ports/8080/lab?tab=1"
        assert followed.json()["cookie"] is None  # the token cookie is the platform's, not the pod's
    header = httpx.get(f"{base}/x", headers={"x-gpucloud-pod-token": token})
    assert header.status_code == 200 and header.json()["token_header"] is None
    assert httpx.get(f"{base}/x", headers={"x-gpucloud-pod-token": "wrong" * 8}).status_code == 404


def test_websockets_pass_to_the_pod_and_other_sites_pages_are_refused(
    server: str, client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    pod_id, token = running_pod(client, alice, django_capture_on_commit_callbacks, server)
    ws_base = server.replace("http://", "ws://") + f"/pods/{pod_id}/ports/8081"
    host = server.removeprefix("http://")
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_of(alice)}"
    same_site = {"Cookie": cookie, "Origin": f"http://{host}"}
    with connect(f"{ws_base}/api/kernels/1/channels", additional_headers=same_site) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"
        ws.send("again")
        assert ws.recv(timeout=5) == "echo:again"
    with connect(f"{ws_base}/?gpucloud_token={token}") as ws:
        ws.send("with a token")
        assert ws.recv(timeout=5) == "echo:with a token"
    with (
        pytest.raises(InvalidStatus),
        connect(f"{ws_base}/", additional_headers={"Cookie": cookie, "Origin": "https://evil.example"}),
    ):
        pass  # fmt: skip


def test_a_stopped_pod_says_so(
    server: str, client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    pod_id, token = running_pod(client, alice, django_capture_on_commit_callbacks, server)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/api/v1/pods/{pod_id}/stop", **alice.auth)
    pod_proxy.decisions_clear()
    answer = httpx.get(f"{server}/pods/{pod_id}/ports/8080/", headers={"x-gpucloud-pod-token": token})
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == "The pod is stopped: its ports answer while it runs."


def test_a_request_without_a_body_is_sent_again_once_when_the_pod_drops_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pod's server that closes a connection before answering (a kept-alive one it had closed, a full
    accept queue): a GET is sent again once; a POST, whose body has gone, is a 502."""
    dropped: list[int] = []

    class Flaky(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            if len(dropped) % 2 == 0:  # every other connection: closed without a word
                dropped.append(1)
                return
            dropped.append(0)
            self.request.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Flaky) as flaky:
        threading.Thread(target=flaky.serve_forever, daemon=True).start()
        target = PortTarget(url=f"http://127.0.0.1:{flaky.server_address[1]}", org_id="org_x")
        monkeypatch.setattr(pod_proxy, "pod_port_target", lambda *args, **kwargs: target)
        pod_proxy.decisions_clear()
        got = asgi_request("GET", "/pods/pod_x/ports/8080/", headers={"x-gpucloud-pod-token": "t"})
        assert (got.status_code, got.text, dropped) == (200, "ok", [1, 0])
        posted = asgi_request("POST", "/pods/pod_x/ports/8080/", headers={"x-gpucloud-pod-token": "t"}, content=b"x")
        assert posted.status_code == 502 and dropped == [1, 0, 1]
        dropped.clear()
        flaky.shutdown()
    pod_proxy.decisions_clear()  # nothing listens there now: a browser is told the app may be starting
    browser = asgi_request(
        "GET", "/pods/pod_x/ports/8080/", headers={"x-gpucloud-pod-token": "t", "accept": "text/html"}
    )
    assert browser.status_code == 502 and browser.headers["retry-after"] == "2"
    assert "not answering yet" in browser.text and "http-equiv=refresh content=2" in browser.text
    machine = asgi_request("GET", "/pods/pod_x/ports/8080/", headers={"x-gpucloud-pod-token": "t"})
    assert machine.status_code == 502 and machine.json()["error"]["type"] == "bad_gateway"  # a client: JSON
