"""The Stripe fake speaks Stripe's contract: the real SDK drives it, end to end."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe, decode_form, sign_webhook

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_fake", base_addresses={"api": fake.url}, max_network_retries=0)


def _payment_session_params(customer: str, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "customer": customer,
        "client_reference_id": "org_x",
        "line_items": [
            {
                "price_data": {"currency": "usd", "unit_amount": 2500, "product_data": {"name": "GPU credits"}},
                "quantity": 2,
            }
        ],
        "metadata": {"org_id": "org_x", "kind": "topup"},
        "payment_intent_data": {"setup_future_usage": "off_session", "metadata": {"org_id": "org_x"}},
        "success_url": "https://app.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.test/billing",
    }
    params.update(overrides)
    return params


def test_form_decoder_reads_bracket_notation() -> None:
    pairs = parse_qsl(
        "line_items[0][price_data][unit_amount]=2500&line_items[0][quantity]=1&line_items[1][quantity]=3"
        "&metadata[org_id]=org_x&expand[]=payment_method&expand[]=customer&email=a%40b.test&note=",
        keep_blank_values=True,
    )
    assert decode_form(pairs) == {
        "line_items": [{"price_data": {"unit_amount": "2500"}, "quantity": "1"}, {"quantity": "3"}],
        "metadata": {"org_id": "org_x"},
        "expand": ["payment_method", "customer"],
        "email": "a@b.test",
        "note": "",
    }


def test_customer_create_and_retrieve(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "alice@example.com", "name": "Alice", "metadata": {"org_id": "org_x"}}
    )
    assert customer.id.startswith("cus_")
    assert customer.object == "customer"
    assert customer.metadata.to_dict() == {"org_id": "org_x"}
    assert customer.invoice_settings.default_payment_method is None
    assert isinstance(customer.created, int)

    fetched = client.v1.customers.retrieve(customer.id)
    assert (fetched.id, fetched.email, fetched.name) == (customer.id, "alice@example.com", "Alice")

    method, path, params, headers = fake.requests[0]
    assert (method, path) == ("POST", "/v1/customers")
    assert params == {"email": "alice@example.com", "name": "Alice", "metadata": {"org_id": "org_x"}}
    assert headers["Authorization"] == "Bearer sk_test_fake"


def test_payment_checkout_complete_and_retrieve(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com"})
    session = client.v1.checkout.sessions.create(params=_payment_session_params(customer.id))
    assert session.id.startswith("cs_test_")
    assert (session.object, session.mode, session.status, session.payment_status) == (
        "checkout.session",
        "payment",
        "open",
        "unpaid",
    )
    assert (session.amount_total, session.currency, session.customer) == (5000, "usd", customer.id)
    assert session.client_reference_id == "org_x"
    assert session.metadata.to_dict() == {"org_id": "org_x", "kind": "topup"}
    assert session.url == f"{fake.url}/pay/{session.id}"
    assert session.payment_intent is None

    completed = fake.complete_checkout(session.id)
    assert completed["status"] == "complete"

    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    assert paid.payment_intent is not None and paid.payment_intent.startswith("pi_")

    intent = client.v1.payment_intents.retrieve(paid.payment_intent, params={"expand": ["payment_method"]})
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", 5000, 5000)
    assert intent.customer == customer.id
    assert intent.metadata.to_dict() == {"org_id": "org_x"}
    assert intent.latest_charge.startswith("ch_")
    assert intent.payment_method.object == "payment_method"
    assert intent.payment_method.card.last4 == "4242"
    # setup_future_usage saves the card on the customer, so it can be charged off-session later.
    assert intent.payment_method.customer == customer.id
    assert fake.requests[-1].params == {"expand": ["payment_method"]}

    with pytest.raises(ValueError, match="not open"):
        fake.complete_checkout(session.id)


def test_setup_checkout_then_off_session_charge(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer.id,
            "currency": "usd",
            "success_url": "https://app.test/ok",
            "cancel_url": "https://app.test/cancel",
            "metadata": {"org_id": "org_x"},
        }
    )
    assert (session.payment_status, session.amount_total, session.setup_intent) == ("no_payment_required", None, None)

    fake.complete_checkout(session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.status == "complete"
    setup_intent = client.v1.setup_intents.retrieve(session.setup_intent)
    assert (setup_intent.status, setup_intent.customer) == ("succeeded", customer.id)
    payment_method = client.v1.payment_methods.retrieve(setup_intent.payment_method)
    assert (payment_method.type, payment_method.card.brand, payment_method.customer) == ("card", "visa", customer.id)

    intent = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": payment_method.id,
            "off_session": True,
            "confirm": True,
            "metadata": {"org_id": "org_x"},
            "description": "Auto top-up",
        }
    )
    assert (intent.status, intent.amount_received, intent.payment_method) == ("succeeded", 1000, payment_method.id)
    assert fake.get(intent.latest_charge)["status"] == "succeeded"


def test_idempotency_key_replays_without_creating(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com"})
    params = _payment_session_params(customer.id)
    first = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k1"})
    again = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "k1"})
    assert again.id == first.id
    assert len(fake.objects("checkout.session")) == 1
    assert again.last_response.headers["Idempotent-Replayed"] == "true"

    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(
            params={**params, "client_reference_id": "other"}, options={"idempotency_key": "k1"}
        )
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "x@example.com"}, options={"idempotency_key": "k1"})
    assert len(fake.objects("checkout.session")) == 1
    assert len(fake.objects("customer")) == 1


@pytest.mark.parametrize("how", ["test_token", "registered"])
def test_declined_off_session_charge_raises_card_error(fake: FakeStripe, client: stripe.StripeClient, how: str) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com"})
    if how == "registered":
        pm_id = fake.add_payment_method(customer.id)["id"]
        fake.decline_payment_method(pm_id)
    else:
        pm_id = "pm_card_chargeDeclined"
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm_id,
                "off_session": True,
                "confirm": True,
            },
            options={"idempotency_key": "charge-1"},
        )
    error = caught.value
    assert (error.http_status, error.code) == (402, "card_declined")
    assert error.error.decline_code == "generic_decline"
    assert error.user_message == "Your card was declined."
    intent = error.error.payment_intent
    assert intent.status == "requires_payment_method"
    assert fake.get(intent.id)["last_payment_error"]["code"] == "card_declined"

    # The decline was stored under the idempotency key: a retry replays it and charges nothing.
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm_id,
                "off_session": True,
                "confirm": True,
            },
            options={"idempotency_key": "charge-1"},
        )
    assert len(fake.objects("payment_intent")) == 1


def test_invalid_requests_name_the_param(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com"})
    params = _payment_session_params(customer.id)
    params["line_items"][0]["price_data"]["currency"] = "eur"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=params)
    assert caught.value.http_status == 400
    assert caught.value.param == "line_items[0][price_data][currency]"

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(
            params={"mode": "setup", "currency": "eur", "customer": customer.id, "success_url": "https://app.test/ok"}
        )
    assert caught.value.param == "currency"

    params = _payment_session_params(customer.id)
    params["line_items"][0]["price_data"]["unit_amount"] = 0
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=params)
    assert caught.value.param == "line_items[0][price_data][unit_amount]"

    params = _payment_session_params(customer.id)
    del params["success_url"]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=params)
    assert (caught.value.param, caught.value.code) == ("success_url", "parameter_missing")

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert (caught.value.param, caught.value.code) == ("amount", "amount_too_small")

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_missing")
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (404, "resource_missing", "id")
    assert fake.objects("checkout.session") == []


def test_requests_without_a_test_key_are_refused(fake: FakeStripe) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{fake.url}/v1/customers/cus_x", timeout=5)
    assert caught.value.code == 401
    assert json.load(caught.value)["error"]["type"] == "invalid_request_error"

    live = stripe.StripeClient("sk_live_nope", base_addresses={"api": fake.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        live.v1.customers.create(params={"email": "a@example.com"})


def test_hosted_page_pays_and_redirects(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com"})
    session = client.v1.checkout.sessions.create(params=_payment_session_params(customer.id))
    url = urlsplit(session.url)
    connection = http.client.HTTPConnection(url.netloc, timeout=5)
    connection.request("POST", url.path, body="", headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    assert response.status == 303
    assert response.getheader("Location") == f"https://app.test/billing/success?session_id={session.id}"
    connection.close()
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


def test_sign_webhook_verifies_with_the_sdk(fake: FakeStripe) -> None:
    event = fake.event("checkout.session.completed", {"id": "cs_test_x", "object": "checkout.session"})
    assert event["id"].startswith("evt_") and event["livemode"] is False
    payload = json.dumps(event).encode()

    verified = stripe.Webhook.construct_event(payload, sign_webhook(payload, WEBHOOK_SECRET), WEBHOOK_SECRET, 300)
    assert (verified.id, verified.type, verified.data.object.id) == (event["id"], event["type"], "cs_test_x")

    tampered = payload.replace(b"cs_test_x", b"cs_test_y")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, sign_webhook(payload, WEBHOOK_SECRET), WEBHOOK_SECRET, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign_webhook(payload, "whsec_other"), WEBHOOK_SECRET, 300)
    stale = sign_webhook(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, stale, WEBHOOK_SECRET, 300)
