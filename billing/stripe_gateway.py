"""The one seam to Stripe. Every call has a timeout and, for writes, an idempotency key.

Tests point STRIPE_API_BASE at a local fake that follows Stripe's documented API; nothing
else in the code base talks to Stripe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

from gpucloud.core.errors import ApiError


class PaymentsNotConfigured(ApiError):
    status = 503
    type = "payments_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "Payments are not configured on this gpucloud (no STRIPE_SECRET_KEY). "
            "Ask the operator for credit: `manage.py grant_credit`."
        )


class CardDeclined(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise PaymentsNotConfigured()
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        max_network_retries=2,  # Stripe retries safely: every write below carries an idempotency key
    )


def customer_create(*, email: str, org_id: str, org_name: str, idempotency_key: str) -> str:
    customer = _client().v1.customers.create(
        params={"email": email, "name": org_name, "metadata": {"org_id": org_id}},
        options={"idempotency_key": idempotency_key},
    )
    return str(customer.id)


@dataclass(frozen=True)
class Checkout:
    session_id: str
    url: str


def checkout_payment_create(
    *, customer_id: str, org_id: str, amount_cents: int, success_url: str, cancel_url: str, idempotency_key: str
) -> Checkout:
    """A Checkout Session that charges `amount_cents` and saves the card for auto-refill."""
    session = _client().v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": org_id,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": amount_cents,
                        "product_data": {"name": "gpucloud credit"},
                    },
                }
            ],
            "payment_intent_data": {"setup_future_usage": "off_session", "metadata": {"org_id": org_id}},
            "metadata": {"org_id": org_id, "purpose": "topup"},
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        options={"idempotency_key": idempotency_key},
    )
    return Checkout(session_id=str(session.id), url=str(session.url))


def checkout_setup_create(
    *, customer_id: str, org_id: str, success_url: str, cancel_url: str, idempotency_key: str
) -> Checkout:
    """A Checkout Session in setup mode: saves a card for auto-refill without charging."""
    session = _client().v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer_id,
            "currency": "usd",
            "client_reference_id": org_id,
            "metadata": {"org_id": org_id, "purpose": "save_card"},
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        options={"idempotency_key": idempotency_key},
    )
    return Checkout(session_id=str(session.id), url=str(session.url))


@dataclass(frozen=True)
class SavedCard:
    payment_method_id: str
    label: str


def _card_label(payment_method: dict[str, Any]) -> str:
    card = payment_method.get("card") or {}
    return f"{card.get('brand', 'card')} •••• {card.get('last4', '????')}"


def payment_method_of_payment_intent(payment_intent_id: str) -> SavedCard | None:
    intent = _client().v1.payment_intents.retrieve(payment_intent_id, params={"expand": ["payment_method"]}).to_dict()
    method = intent.get("payment_method")
    if not method:
        return None
    return SavedCard(payment_method_id=str(method["id"]), label=_card_label(method))


def payment_method_of_setup_intent(setup_intent_id: str) -> SavedCard | None:
    client = _client()
    method_id = client.v1.setup_intents.retrieve(setup_intent_id).to_dict().get("payment_method")
    if not method_id:
        return None
    method = client.v1.payment_methods.retrieve(str(method_id)).to_dict()
    return SavedCard(payment_method_id=str(method_id), label=_card_label(method))


@dataclass(frozen=True)
class OffSessionCharge:
    payment_intent_id: str
    amount_cents: int


def charge_off_session(
    *, customer_id: str, payment_method_id: str, amount_cents: int, org_id: str, idempotency_key: str
) -> OffSessionCharge:
    """Charge a saved card now. Raises CardDeclined when the bank says no."""
    try:
        intent = _client().v1.payment_intents.create(
            params={
                "amount": amount_cents,
                "currency": "usd",
                "customer": customer_id,
                "payment_method": payment_method_id,
                "off_session": True,
                "confirm": True,
                "description": "gpucloud auto-refill",
                "metadata": {"org_id": org_id, "purpose": "auto_refill"},
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError as exc:
        raise CardDeclined(exc.user_message or str(exc), exc.code or "card_declined") from exc
    if intent.status != "succeeded":
        raise CardDeclined(f"The payment needs attention (status {intent.status}).", intent.status or "unknown")
    return OffSessionCharge(payment_intent_id=str(intent.id), amount_cents=int(intent.amount_received or 0))


def webhook_event(payload: bytes, signature: str | None) -> dict[str, Any]:
    """Verify a webhook delivery and return the event; raises ValueError (bad JSON) or
    stripe.SignatureVerificationError (bad or stale signature)."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise PaymentsNotConfigured()
    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
    event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=tolerance)
    # The SDK refuses a signature older than the tolerance; one from further in the future than that
    # is as suspect (a captured delivery re-signed ahead, or a clock far off) and is refused too.
    if _signed_at(signature or "") > time.time() + tolerance:
        raise stripe.SignatureVerificationError("The signature's timestamp is in the future.", signature)
    return event.to_dict()


def _signed_at(signature: str) -> int:
    """The `t=` of a Stripe-Signature header (already verified: it is there and an integer)."""
    for part in signature.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return 0
