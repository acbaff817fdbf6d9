"""Top-ups, saved cards and auto-refill through the real Stripe SDK against a local fake that
follows Stripe's documented API, with webhooks signed by real HMAC."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from accounts.models import ActivityEvent
from billing import refill, stripe_gateway
from billing.invariants import ledger_violations
from billing.models import (
    AutoRefillAttempt,
    BillingProfile,
    LedgerTransaction,
    RefillStatus,
    StripeEvent,
    StripeEventStatus,
    TransactionKind,
)
from billing.selectors import balance_of
from tests.fakes.stripe_server import FakeStripe, sign_webhook
from tests.support.billing import fund, ledger_snapshot, spend_down
from tests.support.personas import Persona
from tests.support.stripe import SECRET, card_on_file, deliver, start_topup

USD = 1_000_000


def test_checkout_credits_only_on_the_signed_webhook(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    checkout = start_topup(client, alice, 50)
    assert checkout["checkout_url"].startswith(stripe_fake.url + "/pay/cs_")
    session = stripe_fake.get(checkout["session_id"])
    assert session["amount_total"] == 5000 and session["currency"] == "usd"
    assert balance_of(alice.org).balance_micros == 0  # nothing until Stripe says paid

    paid = stripe_fake.complete_checkout(checkout["session_id"])
    response = deliver(
        client, stripe_fake.event("checkout.session.completed", paid), django_capture_on_commit_callbacks
    )
    assert response.status_code == 200
    assert balance_of(alice.org).available_micros == 50 * USD
    profile = BillingProfile.objects.get(org=alice.org)
    assert profile.payment_method_label == "visa •••• 4242"  # saved from the first payment
    assert ActivityEvent.objects.filter(org=alice.org, kind="billing.topup").count() == 1
    assert ledger_violations() == []


def test_duplicate_and_reordered_deliveries_credit_once(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    checkout = start_topup(client, alice, 25)
    paid = stripe_fake.complete_checkout(checkout["session_id"])
    completed = stripe_fake.event("checkout.session.completed", paid)
    async_ok = stripe_fake.event("checkout.session.async_payment_succeeded", paid)  # same payment, other event
    for event in (async_ok, completed, completed, async_ok):
        assert deliver(client, event, django_capture_on_commit_callbacks).status_code == 200
    assert balance_of(alice.org).available_micros == 25 * USD
    assert StripeEvent.objects.count() == 2
    assert LedgerTransaction.objects.filter(kind=TransactionKind.TOPUP).count() == 1


def test_unpaid_and_unknown_sessions_credit_nothing(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    checkout = start_topup(client, alice, 25)
    unpaid = stripe_fake.get(checkout["session_id"]) | {"status": "complete"}
    stranger = stripe_fake.get(checkout["session_id"]) | {"id": "cs_test_not_ours", "payment_status": "paid"}
    deliver(client, stripe_fake.event("checkout.session.completed", unpaid), django_capture_on_commit_callbacks)
    deliver(client, stripe_fake.event("checkout.session.completed", stranger), django_capture_on_commit_callbacks)
    assert balance_of(alice.org).balance_micros == 0
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {StripeEventStatus.IGNORED}


def test_bad_signature_and_bad_json_are_400_and_store_nothing(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    checkout = start_topup(client, alice, 25)
    paid = stripe_fake.complete_checkout(checkout["session_id"])
    event = stripe_fake.event("checkout.session.completed", paid)
    forged = deliver(client, event, django_capture_on_commit_callbacks, secret="whsec_wrong")
    payload = b"{not json"
    malformed = client.post(
        "/billing/stripe/webhook/",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_webhook(payload, SECRET),
    )
    unsigned = client.post("/billing/stripe/webhook/", data=json.dumps(event), content_type="application/json")
    assert (forged.status_code, malformed.status_code, unsigned.status_code) == (400, 400, 400)
    assert forged.json()["error"]["type"] == "invalid_signature"
    assert malformed.json()["error"]["message"] == "The payload is not valid JSON."
    assert not StripeEvent.objects.exists()
    assert balance_of(alice.org).balance_micros == 0


def test_stale_signature_is_refused(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:

    event = stripe_fake.event("checkout.session.completed", {"id": "cs_x", "object": "checkout.session"})
    payload = json.dumps(event).encode()
    # Past five minutes either way, with room: a second passing before the check must not bring one back inside.
    for signed_at in (int(time.time()) - 360, int(time.time()) + 360):
        header = sign_webhook(payload, SECRET, timestamp=signed_at)
        response = client.post(
            "/billing/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
        )
        assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_signature"
    assert not StripeEvent.objects.exists()


def test_a_validly_signed_payload_nested_too_deep_is_a_400_not_a_500(
    client: Client, db: None, stripe_fake: FakeStripe
) -> None:
    payload = b"[" * 10_000 + b"]" * 10_000
    response = client.post("/billing/stripe/webhook/", data=payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_webhook(payload, SECRET))  # fmt: skip
    assert response.status_code == 400 and response.json()["error"]["message"] == "The payload is not valid JSON."
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    ("amount", "param_message"),
    [
        (-25, "between $5.00 and $10000.00"),
        (0, "between $5.00 and $10000.00"),
        (10_001, "between $5.00 and $10000.00"),
        (12.345, "whole cents"),
        (1e300, "between"),
        ("abc", "amount_usd"),
        ("25", "must be a number of US dollars"),  # *_usd fields are JSON numbers (issue 14)
    ],
)
def test_bad_topup_amounts_are_4xx_and_change_nothing(
    client: Client, alice: Persona, stripe_fake: FakeStripe, amount: object, param_message: str
) -> None:
    before = ledger_snapshot()
    response = client.post(
        "/api/v1/billing/add-funds", data={"amount_usd": amount}, content_type="application/json", **alice.auth
    )
    assert response.status_code in (400, 422)
    assert param_message in json.dumps(response.json())
    assert ledger_snapshot() == before
    assert not [r for r in stripe_fake.requests if r.path == "/v1/checkout/sessions"]


def test_unknown_currency_is_400_and_changes_nothing(client: Client, alice: Persona, stripe_fake: FakeStripe) -> None:
    before = ledger_snapshot()
    response = client.post(
        "/api/v1/billing/add-funds",
        data={"amount_usd": 25, "currency": "eur"},
        content_type="application/json",
        **alice.auth,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "currency"
    assert ledger_snapshot() == before and not stripe_fake.requests


def test_without_stripe_payments_say_not_configured(client: Client, alice: Persona, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    response = client.post(
        "/api/v1/billing/add-funds", data={"amount_usd": 25}, content_type="application/json", **alice.auth
    )
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "payments_not_configured"
    assert client.get("/api/v1/billing/balance", **alice.auth).json()["payments_configured"] is False


def test_members_cannot_add_funds(client: Client, alice: Persona, bob: Persona, stripe_fake: FakeStripe) -> None:
    response = client.post(
        "/api/v1/billing/add-funds", data={"amount_usd": 25}, content_type="application/json", **bob.auth
    )
    assert response.status_code == 403
    assert not stripe_fake.requests


def test_auto_refill_charges_the_saved_card_once(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    card_on_file(client, alice, stripe_fake, django_capture_on_commit_callbacks)
    patch = client.patch(
        "/api/v1/billing/auto-refill",
        data={"enabled": True, "threshold_usd": 10, "amount_usd": 30},
        content_type="application/json",
        **alice.auth,
    )
    assert patch.status_code == 200 and patch.json()["payment_method"] == "visa •••• 4242"
    spend_down(alice, 15 * USD)  # 20 - 15 = 5 < 10
    attempt = refill.auto_refill_start(alice.org)
    assert attempt is not None
    assert refill.auto_refill_start(alice.org) is None  # one in flight at most
    refill.auto_refill_execute(attempt.pk)
    refill.auto_refill_execute(attempt.pk)  # a retried task does nothing more
    assert balance_of(alice.org).available_micros == 35 * USD
    assert refill.auto_refill_start(alice.org) is None  # not needed now, and not again within the hour
    intent = next(o for o in stripe_fake.objects("payment_intent") if o.get("off_session") or o["amount"] == 3000)
    # The webhook for the same PaymentIntent credits nothing more.
    deliver(client, stripe_fake.event("payment_intent.succeeded", intent), django_capture_on_commit_callbacks)
    assert balance_of(alice.org).available_micros == 35 * USD
    assert LedgerTransaction.objects.filter(kind=TransactionKind.AUTO_REFILL).count() == 1
    assert ledger_violations() == []


def test_a_crash_after_recording_the_attempt_resumes_with_the_same_key(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    card_on_file(client, alice, stripe_fake, django_capture_on_commit_callbacks)
    client.patch("/api/v1/billing/auto-refill", data={"enabled": True, "threshold_usd": 10, "amount_usd": 30},
                 content_type="application/json", **alice.auth)  # fmt: skip
    spend_down(alice, 15 * USD)
    attempt = refill.auto_refill_start(alice.org)
    assert attempt is not None
    # The worker charged the card, then died before recording the result: Stripe has the charge.

    profile = BillingProfile.objects.get(org=alice.org)
    stripe_gateway.charge_off_session(
        customer_id=profile.stripe_customer_id, payment_method_id=profile.stripe_payment_method_id,
        amount_cents=3000, org_id=alice.org.pk, idempotency_key=attempt.idempotency_key,
    )  # fmt: skip
    refill.auto_refill_execute(attempt.pk)  # the resume task
    intents = [o for o in stripe_fake.objects("payment_intent") if o["amount"] == 3000]
    assert len(intents) == 1  # one charge at Stripe
    assert balance_of(alice.org).available_micros == 35 * USD


def test_a_declined_card_disables_auto_refill_and_emails(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    card_on_file(client, alice, stripe_fake, django_capture_on_commit_callbacks)
    client.patch("/api/v1/billing/auto-refill", data={"enabled": True, "threshold_usd": 10, "amount_usd": 30},
                 content_type="application/json", **alice.auth)  # fmt: skip
    stripe_fake.decline_payment_method(BillingProfile.objects.get(org=alice.org).stripe_payment_method_id)
    spend_down(alice, 15 * USD)
    attempt = refill.auto_refill_start(alice.org)
    assert attempt is not None
    with django_capture_on_commit_callbacks(execute=True):
        refill.auto_refill_execute(attempt.pk)
    attempt.refresh_from_db()
    assert attempt.status == RefillStatus.FAILED and "declined" in attempt.error
    profile = BillingProfile.objects.get(org=alice.org)
    assert profile.auto_refill_enabled is False and "declined" in profile.auto_refill_disabled_reason
    assert any("auto-refill failed" in m.subject for m in mail.outbox)
    assert balance_of(alice.org).available_micros == 5 * USD
    assert AutoRefillAttempt.objects.count() == 1


def test_auto_refill_needs_a_saved_card(client: Client, alice: Persona, stripe_fake: FakeStripe) -> None:
    response = client.patch(
        "/api/v1/billing/auto-refill", data={"enabled": True}, content_type="application/json", **alice.auth
    )
    assert response.status_code == 409 and "Save a card first" in response.json()["error"]["message"]
    assert not BillingProfile.objects.filter(org=alice.org, auto_refill_enabled=True).exists()


def test_refunds_from_stripe_post_the_difference_once(
    client: Client, alice: Persona, stripe_fake: FakeStripe, django_capture_on_commit_callbacks: Any
) -> None:
    card_on_file(client, alice, stripe_fake, django_capture_on_commit_callbacks)
    customer = BillingProfile.objects.get(org=alice.org).stripe_customer_id
    charge = {"id": "ch_1", "object": "charge", "customer": customer, "amount": 2000}
    for refunded in (500, 500, 2000, 500):  # partial, replay, full, a late replay of the first
        event = stripe_fake.event("charge.refunded", charge | {"amount_refunded": refunded})
        deliver(client, event, django_capture_on_commit_callbacks)
    assert balance_of(alice.org).available_micros == 0
    assert LedgerTransaction.objects.filter(kind=TransactionKind.REFUND).count() == 2
    assert ledger_violations() == []


def test_fund_helper_matches_real_topups(alice: Persona) -> None:
    fund(alice.org, USD, key="stripe:checkout:cs_x")
    assert balance_of(alice.org).available_micros == USD
