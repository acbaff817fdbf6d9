"""The gateway's routes in the OpenAPI description (issue 14): /v1 chat, completions, embeddings and
models, and the per-deployment and org-scoped routes, with every status they answer, OpenAI's error
shape, and OpenAI's request schemas (the very ones the gateway enforces)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.test import Client
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from gateway import bodies
from tests.fakes.engine_server import EngineThread
from tests.support.billing import fund
from tests.support.gateway import serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)
INFERENCE_STATUSES = ["200", "202", "400", "401", "402", "403", "404", "413", "422", "429", "500", "502", "503", "504"]


def description(client: Client) -> dict[str, Any]:
    return dict(client.get("/api/v1/openapi.json").json())


def validates(schema: dict[str, Any], component: dict[str, Any], document: Any) -> bool:
    return bool(Draft202012Validator({**component, "components": schema["components"]}).is_valid(document))


def test_every_gateway_route_is_described_with_every_status(client: Client) -> None:
    schema = description(client)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        operation = schema["paths"][path]["post"]
        assert sorted(operation["responses"], key=int) == INFERENCE_STATUSES, path
        assert set(operation["responses"]["202"]["headers"]) == {"Retry-After", "Location"}
        assert {p["name"] for p in operation["parameters"]} == {"Prefer", "X-Wait-For-Ready"}
    assert sorted(schema["paths"]["/v1/models"]["get"]["responses"]) == ["200", "401"]
    assert sorted(schema["paths"]["/v1/models/{model}"]["get"]["responses"]) == ["200", "401", "404"]
    for path in (
        "/api/v1/deployments/{deployment_id}/chat/completions",
        "/api/v1/deployments/{deployment_id}/embeddings",
        "/api/v1/orgs/{org_id}/deployments/{deployment_id}/chat/completions",
        "/api/v1/orgs/{org_id}/deployments/{deployment_id}/embeddings",
    ):
        assert sorted(schema["paths"][path]["post"]["responses"], key=int) == INFERENCE_STATUSES, path
    # Every reference resolves inside the description.
    text = json.dumps(schema)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schema["components"]["schemas"], ref


def test_each_route_describes_its_body_limit_and_the_budget_for_large_bodies(client: Client) -> None:
    schema = description(client)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        operation = schema["paths"][path]["post"]
        limit = f"{bodies.LIMITS[path] // bodies.MiB} MiB ({bodies.LIMITS[path]:,} bytes)"
        assert limit in operation["description"] and limit in operation["responses"]["413"]["description"], path
        busy = operation["responses"]["503"]
        assert "server_busy" in busy["description"] and set(busy["headers"]) == {"Retry-After"}, path
    pinned = schema["paths"]["/api/v1/deployments/{deployment_id}/embeddings"]["post"]["responses"]["413"]
    assert "4 MiB (4,194,304 bytes)" in pinned["description"]


def test_the_described_request_schema_is_the_one_enforced(client: Client) -> None:
    schema = description(client)
    chat = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    good = {"model": "dep_x", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}
    assert validates(schema, chat, good)
    for bad in (
        {**good, "messages": [{"role": "robot", "content": "hi"}]},
        {**good, "messages": [{"role": None, "content": "hi"}]},
        {**good, "temperature": 3},
        {"messages": good["messages"]},  # /v1 needs model
    ):
        assert not validates(schema, chat, bad), bad
    pinned = schema["paths"]["/api/v1/deployments/{deployment_id}/chat/completions"]["post"]
    assert validates(
        schema, pinned["requestBody"]["content"]["application/json"]["schema"], {"messages": good["messages"]}
    )


def test_answers_match_their_description(
    client: Client, server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    schema = description(client)
    responses = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    fund(alice.org, 10_000_000)
    ready = serving_deployment(alice, [engines()])
    cold = serving_deployment(alice, [], status="scaled_to_zero")
    auth = {"Authorization": f"Bearer {alice.key}"}
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    answers = {
        "200": httpx.post(f"{server}/v1/chat/completions", json={**body, "model": ready.pk}, headers=auth),
        "202": httpx.post(
            f"{server}/v1/chat/completions",
            json={**body, "model": cold.pk},
            headers={**auth, "Prefer": "respond-async"},
        ),
        "400": httpx.post(
            f"{server}/v1/chat/completions", json={**body, "model": "smollm2-135m-instruct"}, headers=auth
        ),
        "401": httpx.post(f"{server}/v1/chat/completions", json=body),
        "404": httpx.post(f"{server}/v1/chat/completions", json={**body, "model": "gpt-9"}, headers=auth),
        "413": httpx.post(
            f"{server}/v1/chat/completions", content=b" " * (bodies.LIMITS["/v1/chat/completions"] + 1), headers=auth
        ),
    }
    for status, answer in answers.items():
        assert str(answer.status_code) == status, answer.text
        documented = responses[status]["content"]["application/json"]["schema"]
        assert validates(schema, documented, answer.json()), (status, answer.json())


def test_what_schemathesis_found_is_answered_as_described(server: str, alice: Persona) -> None:
    auth = {"Authorization": f"Bearer {alice.key}"}
    wrong_method = httpx.request("TRACE", f"{server}/v1/models", headers=auth)
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "GET")
    wrong_method = httpx.get(f"{server}/v1/chat/completions", headers=auth)
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    for odd_id in ("a%23b", "%C3%B1%26x"):  # not word characters: still the gateway's, a 404 in OpenAI's shape
        response = httpx.post(f"{server}/api/v1/deployments/{odd_id}/embeddings", json={"input": "x"}, headers=auth)
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
