"""A webhook receiver on loopback for the tests: records every request and answers with the next
scripted status (then 200), as a customer's endpoint would; and what a customer does with webhooks
(subscribing through the API, verifying a delivery's signature)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from deployments.models import Deployment
from tests.support.personas import Persona


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    redirect_to: str = ""


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.redirect_to or receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[ThreadingHTTPServer]:
    """One loopback server per module; each test gets a fresh Receiver (its record and script)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Receiver(url="")))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(receiver_server: ThreadingHTTPServer, settings: Any) -> Iterator[Receiver]:
    """A receiver on loopback, which the operator's allow-list admits (as WEBHOOK_ALLOWED_HOSTS would)."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    fresh = Receiver(url=f"http://127.0.0.1:{receiver_server.server_address[1]}/hooks")
    receiver_server.RequestHandlerClass = _handler(fresh)
    yield fresh
    receiver_server.RequestHandlerClass = _handler(Receiver(url=""))  # a late delivery lands nowhere


def subscribe(client: Client, persona: Persona, deployment: Deployment, **body: Any) -> Any:
    return client.post(f"/api/v1/deployments/{deployment.pk}/webhooks", data=json.dumps(body),
                       content_type="application/json", **persona.auth)  # fmt: skip


def reference_verify(body: bytes, sig_header: str, secret: str) -> bool:
    """reference/000's verifier, as a receiver would copy it."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={mac}", sig_header)
