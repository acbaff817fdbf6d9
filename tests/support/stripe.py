"""Stripe through the real SDK against the local fake (tests/fakes/stripe_server.py), and what
Stripe does to the platform: checkouts completed and their webhooks delivered, signed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.fakes.stripe_server import FakeStripe, sign_webhook
from tests.support.personas import Persona

SECRET = "whsec_test_secret"


@pytest.fixture
def stripe_fake(settings: Any) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_WEBHOOK_SECRET = SECRET
        settings.STRIPE_API_BASE = fake.url
        yield fake


def deliver(client: Client, event: dict[str, Any], capture: Any, *, secret: str = SECRET) -> Any:
    payload = json.dumps(event).encode()
    with capture(execute=True):
        return client.post(
            "/billing/stripe/webhook/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign_webhook(payload, secret),
        )


def start_topup(client: Client, persona: Persona, amount: object = 50) -> dict[str, Any]:
    response = client.post(
        "/api/v1/billing/add-funds", data={"amount_usd": amount}, content_type="application/json", **persona.auth
    )
    assert response.status_code == 201, response.content
    return response.json()


def card_on_file(client: Client, persona: Persona, fake: FakeStripe, capture: Any) -> None:
    checkout = start_topup(client, persona, 20)
    deliver(client, fake.event("checkout.session.completed", fake.complete_checkout(checkout["session_id"])), capture)
