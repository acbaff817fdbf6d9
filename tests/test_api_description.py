"""The published OpenAPI description stays true where that is cheap to prove without a server:
money has one type, and every operation declares the errors every operation can answer."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


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
