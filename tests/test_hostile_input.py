"""Input a client should never send, sent to the production ASGI app (issue 15 §5): NUL bytes in ids
and names (PostgreSQL refuses them in text), money beyond its column, JSON nested 10,000 deep, a lone
surrogate in a streamed message, invalid UTF-8 in a multipart field, a body over the upload limit.
Each answer is a 4xx in the route's error shape (the management API's, or OpenAI's on /v1) and
nothing in the database changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from hypothesis import strategies as st

from tests.fakes.engine_server import EngineThread
from tests.support.billing import fund
from tests.support.gateway import asgi_request, serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # a 500 closes the connection: no test transaction to lose
FUZZ_EXAMPLES = 150
CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


MULTIPART_INVALID_UTF8 = (
    b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\n\xff\xfe\r\n'
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n--b--\r\n'
)


def row_counts() -> dict[str, int]:
    """Every model's row count, in one statement (taken twice per request of the sweeps below: one
    COUNT query per model made that most of this module's time)."""
    models = [m for m in apps.get_models() if m._meta.app_label not in ("sessions", "admin", "contenttypes", "auth")]
    tables = [connection.ops.quote_name(m._meta.db_table) for m in models]
    counts = ", ".join(f"(SELECT count(*) FROM {table})" for table in tables)  # noqa: S608 - the models' tables
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        row = cursor.fetchone()
    return {model._meta.label: int(count) for model, count in zip(models, row, strict=True)}


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def hostile_requests(deployment_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    json_headers = {"Content-Type": "application/json"}
    return [
        # NUL bytes in ids (path) and names (body)
        ("GET", "/api/v1/deployments/a%00b", {}),
        ("DELETE", "/api/v1/deployments/a%00b", {}),
        ("GET", "/api/v1/deployments/a%00b/metrics", {}),
        ("GET", f"/api/v1/deployments/{deployment_id}/webhooks/wh_a%00b", {}),
        ("DELETE", f"/api/v1/deployments/{deployment_id}/webhooks/wh_a%00b", {}),
        ("DELETE", "/api/v1/api-keys/key_a%00b", {}),
        ("POST", "/api/v1/api-keys/key_a%00b/regenerate", {}),
        ("DELETE", "/api/v1/ssh-keys/sshkey_a%00b", {}),
        ("GET", "/api/v1/models/a%00b", {}),
        ("GET", "/api/v1/billing/transactions?kind=a%00b", {}),
        ("POST", "/api/v1/api-keys", {"json": {"name": "a\x00b"}}),
        ("POST", "/api/v1/ssh-keys", {"json": {"public_key": "ssh-ed25519 AAAA\x00"}}),
        ("POST", "/api/v1/ssh-keys", {"json": {"public_key": "ssh-ed25519 " + "A" * 20_000}}),
        (
            "POST",
            "/api/v1/deployments",
            {"json": {"name": "a\x00b", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local"}},
        ),
        ("POST", "/api/v1/deployments", {"json": {"model_id": "smol\x00lm2", "gpu_type": "cpu", "region": "local"}}),
        ("POST", "/api/v1/orgs", {"json": {"name": "\x00"}}),
        (
            "POST",
            f"/api/v1/deployments/{deployment_id}/webhooks",
            {"json": {"url": "https://example.com/\x00", "events": ["deployment.active"]}},
        ),
        ("POST", "/v1/chat/completions", {"json": {**CHAT, "model": "dep_\x00x"}}),
        ("GET", "/v1/models/a%00b", {}),
        # money beyond its column
        ("PATCH", "/api/v1/billing/spend-limit", {"json": {"daily_limit_usd": 1e13}}),
        ("PATCH", "/api/v1/billing/spend-limit", {"json": {"daily_limit_usd": 1e308}}),
        (
            "PATCH",
            "/api/v1/billing/spend-limit",
            {"content": b'{"daily_limit_usd": 1' + b"0" * 30 + b"}", "headers": json_headers},
        ),
        ("PATCH", "/api/v1/billing/auto-refill", {"json": {"enabled": False, "threshold_usd": 1e300}}),
        # JSON nested 10,000 deep
        ("POST", "/v1/chat/completions", {"content": deep(10_000).encode(), "headers": json_headers}),
        (
            "POST",
            "/v1/chat/completions",
            {
                "content": json.dumps({**CHAT, "messages": []})[:-1].encode()
                + b', "x": '
                + deep(10_000).encode()
                + b"}",
                "headers": json_headers,
            },
        ),
        ("POST", "/api/v1/api-keys", {"content": deep(10_000).encode(), "headers": json_headers}),
        # deep enough for the schema validator's limit, not for Python's parser (found by the fuzz below)
        (
            "POST",
            "/v1/completions",
            {"content": b'{"unexpected": ' + deep(500).encode() + b"}", "headers": json_headers},
        ),
        # a lone surrogate in a streamed message: valid JSON text, no UTF-8 encoding
        (
            "POST",
            "/v1/chat/completions",
            {
                "content": json.dumps({**CHAT, "stream": True}).replace('"hi"', '"\\ud800"').encode(),
                "headers": json_headers,
            },
        ),
        (
            "POST",
            "/v1/chat/completions",
            {"content": json.dumps(CHAT).replace('"hi"', '"\\udfff x"').encode(), "headers": json_headers},
        ),
        # invalid UTF-8 in a multipart field
        (
            "POST",
            "/v1/audio/transcriptions",
            {"content": MULTIPART_INVALID_UTF8, "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
        ),
        # a body over the management API's upload limit
        (
            "POST",
            "/api/v1/api-keys",
            {
                "content": b'{"name": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}',
                "headers": json_headers,
            },
        ),
        # a malformed webhook URL
        (
            "POST",
            f"/api/v1/deployments/{deployment_id}/webhooks",
            {"json": {"url": "http://[::1/z", "events": ["deployment.active"]}},
        ),
    ]


def test_hostile_input_is_a_4xx_in_the_routes_error_shape_and_changes_nothing(
    alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    fund(alice.org, 10_000_000)
    deployment = serving_deployment(alice, [engines()])
    auth = {"Authorization": f"Bearer {alice.key}"}
    failures = []
    for method, path, options in hostile_requests(deployment.pk):
        before = row_counts()
        headers = {**auth, **options.pop("headers", {})}
        response = asgi_request(method, path, headers=headers, **options)
        label = f"{method} {path} {str(options)[:80]}"
        try:
            answer = response.json()
        except ValueError:
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        if not 400 <= response.status_code < 500 or not isinstance(error, dict) or not error.get("message"):
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
        elif row_counts() != before:
            failures.append(f"{label}: refused, yet rows changed")
    assert failures == [], "\n".join(failures)


HOSTILE_VALUES: list[tuple[str, bytes]] = [
    ("NUL in text", b'"x\\u0000y"'),
    ("a float beyond any column", b"1e308"),
    ("an integer beyond any column", b"1" + b"0" * 30),
    ("a lone surrogate", b'"\\ud800"'),
    ("nested 10,000 deep", deep(10_000).encode()),
]


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_operation_refuses_hostile_ids_and_bodies_without_a_5xx_or_a_change(
    alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    """The fuzz sweep: every operation of the description (the management API's and the gateway's),
    with a NUL in each id of its path, and with each hostile JSON value in every field of its body."""
    fund(alice.org, 10_000_000)
    deployment = serving_deployment(alice, [engines()])
    auth = {"Authorization": f"Bearer {alice.key}"}
    document = asgi_request("GET", "/api/v1/openapi.json").json()
    ids = {
        "deployment_id": deployment.pk,
        "org_id": alice.org.pk,
        "slug": "smollm2-135m-instruct",
        "model": deployment.pk,
    }
    failures, sent = [], 0
    for template, methods in document["paths"].items():
        for method, operation in methods.items():
            params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            variants: list[tuple[str, str, bytes | None]] = []
            if params:
                variants.append(("NUL ids", template.format(**{p: "a%00b" for p in params}), None))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                properties = _resolve(body["schema"], document).get("properties", {})
                path = template.format(**{p: ids.get(p, "x") for p in params})
                for label, value in HOSTILE_VALUES:
                    fields = b", ".join(json.dumps(name).encode() + b": " + value for name in properties)
                    variants.append((label, path, b"{" + fields + b"}"))
            for label, path, content in variants:
                before = row_counts()
                response = asgi_request(
                    method.upper(), path, content=content, headers={**auth, "Content-Type": "application/json"}
                )
                sent += 1
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                shaped = isinstance(answer, dict) and isinstance(answer.get("error"), dict)
                if not 400 <= response.status_code < 500 or not shaped:
                    failures.append(f"{method.upper()} {path} ({label}): {response.status_code} {response.text[:160]}")
                elif row_counts() != before:
                    failures.append(f"{method.upper()} {path} ({label}): refused, yet rows changed")
    print(f"\nhostile sweep: {sent} requests, {len(failures)} failures (5xx, not JSON, no error shape, rows changed)")
    assert sent > 120  # every operation with an id or a body, several times
    assert failures == [], f"{len(failures)} of {sent}:\n" + "\n".join(failures)


def hostile_json() -> st.SearchStrategy[Any]:
    """JSON values a careless or malicious client sends: text with NULs, lone surrogates and control
    characters, numbers beyond any column, deep nesting, and every wrong type."""
    nasty_text = st.text(
        alphabet=st.one_of(st.sampled_from("\x00\ud800\udfff\x1b\r\n\t=+-@'\"\\<>%{}/"), st.characters()),
        max_size=40,
    )
    numbers = st.one_of(
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0, -1, 2**63, -(2**63) - 1, 1e308, -1e308, 5e-324]),
    )
    scalars = st.one_of(st.none(), st.booleans(), numbers, nasty_text)
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
        max_leaves=8,
    )
    return st.one_of(scalars, nested, st.integers(min_value=50, max_value=3_000).map(lambda n: _Raw(deep(n))))


class _Raw(str):
    """JSON text sent as is (nesting deeper than json.dumps would write without recursing)."""


def _encode(body: dict[str, Any]) -> bytes:
    parts = [
        json.dumps(name) + ": " + (value if isinstance(value, _Raw) else json.dumps(value))
        for name, value in body.items()
    ]
    return ("{" + ", ".join(parts) + "}").encode("utf-8", "surrogatepass")


def test_hypothesis_fuzz_of_every_body_never_answers_5xx_and_a_refusal_changes_nothing(
    alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    """Hypothesis draws an operation with a JSON body and fills its declared fields (some or all,
    plus an undeclared one) with hostile values: never a 5xx, always JSON, and a 4xx changes nothing."""
    fund(alice.org, 10_000_000)
    deployment = serving_deployment(alice, [engines()])
    auth = {"Authorization": f"Bearer {alice.key}", "Content-Type": "application/json"}
    document = asgi_request("GET", "/api/v1/openapi.json").json()
    ids = {"deployment_id": deployment.pk, "org_id": alice.org.pk, "slug": "smollm2-135m-instruct"}
    operations = []
    for template, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
                fields = sorted(_resolve(body["schema"], document).get("properties", {}))
                operations.append((method.upper(), template.format(**{p: ids.get(p, "x") for p in params}), fields))
    failures: list[str] = []
    sent = []

    @hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
    @hypothesis.given(data=st.data())
    def probe(data: st.DataObject) -> None:
        method, path, fields = data.draw(st.sampled_from(operations))
        chosen = data.draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []
        body = {name: data.draw(hostile_json()) for name in [*chosen, "unexpected"]}
        before = row_counts()
        response = asgi_request(method, path, content=_encode(body), headers=auth)
        sent.append(response.status_code)
        label = f"{method} {path} {_encode(body)[:120]!r}"
        try:
            answer = response.json()
        except ValueError:
            failures.append(f"{label}: {response.status_code}, not JSON: {response.text[:120]}")
            return
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code} {response.text[:160]}")
        elif response.status_code >= 400 and not (isinstance(answer, dict) and isinstance(answer.get("error"), dict)):
            failures.append(f"{label}: {response.status_code} without the error shape: {response.text[:160]}")
        elif response.status_code >= 400 and row_counts() != before:
            failures.append(f"{label}: refused, yet rows changed")

    probe()
    print(f"\nhypothesis fuzz: {len(sent)} requests, {sum(s >= 500 for s in sent)} 5xx, {len(failures)} failures")
    assert len(sent) == FUZZ_EXAMPLES
    assert failures == [], f"{len(failures)} of {len(sent)}:\n" + "\n".join(failures[:20])
