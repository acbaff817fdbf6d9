"""Calls of the management API (/api/v1) with a persona's key, from Django's test client."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from tests.support.personas import Persona


def call(client: Client, persona: Persona, method: str, path: str, body: Any = None, capture: Any = None) -> Any:
    """`method` on /api/v1`path` with `body` as JSON; with `capture` (pytest-django's
    django_capture_on_commit_callbacks) the on-commit callbacks it queues run before it returns."""
    data = json.dumps(body) if body is not None else None
    send = getattr(client, method)
    if capture is None:
        return send(f"/api/v1{path}", data=data, content_type="application/json", **persona.auth)
    with capture(execute=True):
        return send(f"/api/v1{path}", data=data, content_type="application/json", **persona.auth)
