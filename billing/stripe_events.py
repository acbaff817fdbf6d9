"""Processing of stored Stripe webhook events (run by a task after the webhook answered 200).

Every credit is keyed by the Stripe object it comes from (checkout session, payment intent,
charge refund), never by the event: duplicate deliveries, retries of a failed run, and the
same payment reported by two event types all credit once. Events may come in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import activity_record
from billing import stripe_gateway
from billing.models import (
    BillingProfile,
    CheckoutSession,
    CheckoutStatus,
    LedgerTransaction,
    StripeEvent,
    StripeEventStatus,
    TransactionKind,
)
from billing.services import stripe_credit, stripe_refund
from gpucloud.core.money import usd_display

CENT = 10_000  # micro-USD


def stripe_event_process(event_pk: int) -> StripeEvent:
    event = StripeEvent.objects.get(pk=event_pk)
    if event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED):
        return event
    handler = HANDLERS.get(event.type)
    try:
        outcome = handler(event.payload["data"]["object"]) if handler else StripeEventStatus.IGNORED
    except Exception as exc:
        StripeEvent.objects.filter(pk=event.pk).update(status=StripeEventStatus.FAILED, error=repr(exc)[:2000])
        raise
    StripeEvent.objects.filter(pk=event.pk).update(status=outcome, error="", processed_at=timezone.now())
    event.refresh_from_db()
    return event


def _checkout_completed(session: dict[str, Any]) -> StripeEventStatus:
    record = CheckoutSession.objects.select_related("org").filter(session_id=session["id"]).first()
    if record is None:  # not a session this gpucloud created: never credit unknown money
        return StripeEventStatus.IGNORED
    if session.get("mode") == "setup":
        return _card_saved_from_setup(record, session)
    if session.get("payment_status") != "paid":
        return StripeEventStatus.IGNORED  # async methods: credited by async_payment_succeeded
    return _checkout_paid(record, session)


def _checkout_paid(record: CheckoutSession, session: dict[str, Any]) -> StripeEventStatus:
    amount = int(session["amount_total"]) * CENT
    with transaction.atomic():
        posting = stripe_credit(
            org=record.org,
            amount_micros=amount,
            key=f"stripe:checkout:{record.session_id}",
            kind=TransactionKind.TOPUP,
            description="Payment (Stripe)",
        )
        CheckoutSession.objects.filter(pk=record.pk).update(status=CheckoutStatus.COMPLETED)
        if posting.created:
            message = f"Added {usd_display(amount)} to the balance."
            activity_record(org=record.org, kind="billing.topup", message=message)
    if session.get("payment_intent"):
        card = stripe_gateway.payment_method_of_payment_intent(str(session["payment_intent"]))
        if card is not None:
            _card_save(record.org, card)
    return StripeEventStatus.PROCESSED


def _card_saved_from_setup(record: CheckoutSession, session: dict[str, Any]) -> StripeEventStatus:
    CheckoutSession.objects.filter(pk=record.pk).update(status=CheckoutStatus.COMPLETED)
    card = stripe_gateway.payment_method_of_setup_intent(str(session["setup_intent"]))
    if card is None:
        return StripeEventStatus.IGNORED
    _card_save(record.org, card)
    return StripeEventStatus.PROCESSED


def _card_save(org: Organization, card: stripe_gateway.SavedCard) -> None:
    BillingProfile.objects.filter(org=org).update(
        stripe_payment_method_id=card.payment_method_id, payment_method_label=card.label
    )


def _payment_intent_succeeded(intent: dict[str, Any]) -> StripeEventStatus:
    """Auto-refill charges also arrive by webhook; the key matches the synchronous path's."""
    metadata = intent.get("metadata") or {}
    if metadata.get("purpose") != "auto_refill":
        return StripeEventStatus.IGNORED  # checkout payments are credited from their session
    org = Organization.objects.filter(pk=metadata.get("org_id")).first()
    if org is None:
        return StripeEventStatus.IGNORED
    stripe_credit(
        org=org,
        amount_micros=int(intent["amount_received"]) * CENT,
        key=f"stripe:payment_intent:{intent['id']}",
        kind=TransactionKind.AUTO_REFILL,
        description="Auto-refill by card",
    )
    return StripeEventStatus.PROCESSED


def _charge_refunded(charge: dict[str, Any]) -> StripeEventStatus:
    """A refund made in Stripe's dashboard. `amount_refunded` is cumulative: post only what is
    not recorded yet (under the profile's lock), so replays and partial refunds add up exactly."""
    with transaction.atomic():
        profile = (
            BillingProfile.objects.select_for_update()
            .select_related("org")
            .filter(stripe_customer_id=charge.get("customer"))
            .first()
        )
        if profile is None:
            return StripeEventStatus.IGNORED
        refunded = int(charge.get("amount_refunded") or 0) * CENT
        recorded = LedgerTransaction.objects.filter(
            kind=TransactionKind.REFUND, org=profile.org, metadata__charge=charge["id"]
        )
        already = sum(int(t.metadata["amount_micros"]) for t in recorded)
        if refunded > already:
            stripe_refund(
                org=profile.org,
                amount_micros=refunded - already,
                key=f"stripe:refund:{charge['id']}:{refunded}",
                charge_id=str(charge["id"]),
            )
    return StripeEventStatus.PROCESSED


HANDLERS: dict[str, Callable[[dict[str, Any]], StripeEventStatus]] = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
    "payment_intent.succeeded": _payment_intent_succeeded,
    "charge.refunded": _charge_refunded,
}
