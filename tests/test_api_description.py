"""The published OpenAPI description stays true where that is cheap to prove without a server:
money has one type, and every operation declares the errors every operation can answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from schemathesis.core.result import Ok

from tests.support.personas import Persona


@pytest.fixture(scope="module")
def description() -> dict[str, Any]:
    return dict(Client().get("/api/v1/openapi.json").json())


def _properties(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    return dict(schema.get("properties", {}))


def _types(prop: dict[str, Any]) -> set[str]:
    options = prop.get("anyOf", [prop])
    return {option.get("type", "ref") for option in options}


def test_every_usd_field_is_a_number(description: dict[str, Any]) -> None:
    """*_usd fields are JSON numbers (or null) everywhere: answers and requests alike."""
    components = description["components"]["schemas"]
    wrong = {
        f"{name}.{field}": _types(prop)
        for name, schema in components.items()
        for field, prop in _properties(schema, components).items()
        if field.endswith("_usd") and not _types(prop) <= {"number", "null"}
    }
    assert wrong == {}


def test_every_operation_describes_its_auth_errors_with_the_error_shape(description: dict[str, Any]) -> None:
    missing = []
    for path, methods in description["paths"].items():
        if path.startswith("/v1/"):
            continue  # the gateway's operations, in OpenAI's error shape: tests/gateway/test_openapi.py
        for method, operation in methods.items():
            expected = {"401", "403"} | ({"404"} if "{" in path else set())
            declared = {str(code) for code in operation["responses"]}
            if not expected <= declared:
                missing.append(f"{method.upper()} {path}: {sorted(expected - declared)}")
    assert missing == []
    error = description["paths"]["/api/v1/me"]["get"]["responses"]["401"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert description["components"]["schemas"]["Error"]["required"] == ["error"]


# Operations whose input has constraints the services check: schemathesis generates valid and
# invalid requests from their description and checks each answer against it, in process (WSGI).
CONSTRAINED = ("/api/v1/billing/transactions", "/api/v1/billing/spend-limit", "/api/v1/models", "/api/v1/orgs")
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
# Input the description refuses must be refused. Not the other way round: a line of the described
# form whose base64 is no key of its type is a 400 (no schema can say what bytes make a key).
NEGATIVE_ONLY = ("/api/v1/ssh-keys",)
CASES = [(path, mode) for path in CONSTRAINED for mode in MODES] + [
    (path, schemathesis.GenerationMode.NEGATIVE) for path in NEGATIVE_ONLY
]


@pytest.fixture
def connections_kept_across_requests() -> Iterator[None]:
    """The WSGI app runs in this test's transaction: a request's end must not close its connection
    (PostgreSQL would then refuse the next query), as Django's own test client arranges."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.usefixtures("connections_kept_across_requests")
@pytest.mark.parametrize(("path", "mode"), CASES)
def test_constrained_operations_answer_what_their_description_says(
    alice: Persona, path: str, mode: schemathesis.GenerationMode
) -> None:
    """Every check schemathesis has, as bench/api_conformance.py runs them against a real server."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
    auth = {"Authorization": f"Bearer {alice.key}"}
    operations = [result.ok() for result in schema.include(path=path).get_all_operations() if isinstance(result, Ok)]
    assert operations
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=20, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
        def run(case: Any) -> None:
            case.call_and_validate(headers=auth)

        run()
