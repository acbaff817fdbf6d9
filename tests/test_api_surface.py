"""The management API's edges answer as the API does: its docs work offline, every /api/ path and
method answers JSON errors, and an unknown websocket path is refused, never a 500."""

from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from billing.models import BillingProfile
from tests.support.live import Socket
from tests.support.personas import Persona


def test_api_docs_load_swagger_ui_from_our_static_files_not_a_cdn(client: Client) -> None:
    page = client.get("/api/v1/docs").content.decode()
    scripts = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert "/static/ninja/swagger-ui-bundle.js" in scripts and "/static/ninja/swagger-ui.css" in scripts
    assert not [url for url in scripts if "//" in url], scripts  # nothing from another host
    for name in ("ninja/swagger-ui-bundle.js", "ninja/swagger-ui-init.js", "ninja/swagger-ui.css"):
        assert finders.find(name), f"{name} is not among the static files"


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_an_unknown_api_path_is_a_json_404_on_every_method_with_a_key(alice: Persona, method: str) -> None:
    client = Client(enforce_csrf_checks=True)  # as a real client: no CSRF token, a bearer key
    response = getattr(client, method)("/api/v1/no-such-thing", **alice.auth)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"type": "not_found_error", "message": f"No endpoint {method.upper()} /api/v1/no-such-thing."}
    }


@pytest.mark.parametrize("path", ["/api/no-such-thing", "/api/v2/me"])
def test_unknown_paths_outside_v1_under_api_are_json_too(alice: Persona, path: str) -> None:
    response = Client(enforce_csrf_checks=True).delete(path, **alice.auth)
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(alice: Persona) -> None:
    response = Client(enforce_csrf_checks=True).put("/api/v1/me", **alice.auth)
    assert response.status_code == 405 and response["Content-Type"] == "application/json"
    assert response["Allow"] == "GET"
    assert response.json() == {
        "error": {"type": "invalid_request_error", "message": "PUT is not allowed on /api/v1/me; use GET."}
    }
    both = Client(enforce_csrf_checks=True).delete("/api/v1/api-keys", **alice.auth)
    assert both.status_code == 405 and both["Allow"] == "GET, POST"
    assert both.json()["error"]["message"] == "DELETE is not allowed on /api/v1/api-keys; use GET or POST."


def test_a_wrong_method_without_credentials_is_still_a_json_405(client: Client, db: None) -> None:
    response = client.post("/api/v1/models")
    assert response.status_code == 405 and response.json()["error"]["type"] == "invalid_request_error"


def test_an_unknown_websocket_path_is_refused_not_a_server_error(db: None) -> None:
    async def scenario() -> tuple[bool, int | None]:
        socket = Socket(None, path="/ws/no-such-socket/")
        return await socket.connect()

    accepted, code = asyncio.run(scenario())
    assert not accepted and code == 4404


def test_request_bodies_keep_their_json_types(alice: Persona) -> None:
    """What the description calls invalid is refused, not converted: 0 is not false, "5" not 5."""
    client = Client()
    for body, param in (({"enabled": 0}, "enabled"), ({"enabled": False, "threshold_usd": "5"}, "threshold_usd")):
        response = client.patch("/api/v1/billing/auto-refill", data=body, content_type="application/json", **alice.auth)
        assert response.status_code == 422 and response.json()["error"]["param"] == param, response.content
    refused = client.post(
        "/api/v1/api-keys", data={"name": "x", "scoped": "true"}, content_type="application/json", **alice.auth
    )
    assert (
        refused.status_code == 422 and refused.json()["error"]["message"] == "scoped: Input should be a valid boolean"
    )
    right = {"enabled": False, "threshold_usd": 5}
    accepted = client.patch("/api/v1/billing/auto-refill", data=right, content_type="application/json", **alice.auth)
    assert accepted.status_code == 200 and accepted.json()["threshold_usd"] == 5.0


@pytest.mark.parametrize("body", ["[null, null]", "[]", "5", '"enabled"', "null"])
def test_a_body_that_is_not_an_object_is_refused_and_changes_nothing(alice: Persona, body: str) -> None:
    """Every optional field of a PATCH would read as unset from a list: that is a 422, not a 200."""
    client = Client()
    before = list(BillingProfile.objects.filter(org=alice.org).values())
    response = client.patch("/api/v1/billing/auto-refill", data=body, content_type="application/json", **alice.auth)
    assert response.status_code == 422, response.content
    assert "JSON object" in response.json()["error"]["message"]
    assert list(BillingProfile.objects.filter(org=alice.org).values()) == before
