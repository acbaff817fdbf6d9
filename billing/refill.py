"""Auto-refill: "add $X when available credit drops below $Y" from a saved card.

Guarantees: at most one attempt in flight per org (a partial unique index), at most one
per GPUCLOUD_AUTO_REFILL_MIN_INTERVAL_SECONDS, and the attempt row with its Stripe
idempotency key is committed before Stripe is called, so a crash mid-call is resumed with the
same key (Stripe answers with the original result) and can never charge twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import activity_record
from billing import selectors, stripe_gateway
from billing.models import AutoRefillAttempt, BillingProfile, RefillStatus, TransactionKind
from billing.services import stripe_credit
from gpucloud.core.jobs import enqueue
from gpucloud.core.money import MICROS_PER_USD, usd_display
from webhooks.events import event_emit


def refill_needed(org: Organization) -> bool:
    profile = selectors.profile_of(org)
    if not profile.auto_refill_enabled or not stripe_gateway.is_configured():
        return False
    return selectors.balance_of(org).available_micros < profile.auto_refill_threshold_micros


def auto_refill_start(org: Organization, *, now: datetime | None = None) -> AutoRefillAttempt | None:
    """Record a new attempt if one is due; None when not needed, in flight or too soon."""
    now = now or timezone.now()
    if not refill_needed(org):
        return None
    min_interval = timedelta(seconds=settings.GPUCLOUD_AUTO_REFILL_MIN_INTERVAL_SECONDS)
    try:
        with transaction.atomic():
            profile = BillingProfile.objects.select_for_update().get(org=org)
            recent = AutoRefillAttempt.objects.filter(org=org, created_at__gt=now - min_interval).exists()
            if recent or not profile.auto_refill_enabled:
                return None
            return AutoRefillAttempt.objects.create(
                org=org,
                amount_micros=profile.auto_refill_amount_micros,
                idempotency_key=f"refill:{uuid.uuid4()}",
                created_at=now,
            )
    except IntegrityError:  # another attempt is pending (the partial unique index said so)
        return None


def auto_refill_execute(attempt_id: int) -> AutoRefillAttempt:
    """Charge the card for a pending attempt (again, with the same key, if a crash interrupted it)."""
    attempt = AutoRefillAttempt.objects.select_related("org").get(pk=attempt_id)
    if attempt.status != RefillStatus.PENDING:
        return attempt
    profile = selectors.profile_of(attempt.org)
    try:
        charge = stripe_gateway.charge_off_session(
            customer_id=profile.stripe_customer_id,
            payment_method_id=profile.stripe_payment_method_id,
            amount_cents=attempt.amount_micros // 10_000,
            org_id=attempt.org_id,
            idempotency_key=attempt.idempotency_key,
        )
    except stripe_gateway.CardDeclined as exc:
        return _refill_failed(attempt, str(exc))
    with transaction.atomic():
        stripe_credit(
            org=attempt.org,
            amount_micros=charge.amount_cents * 10_000,
            key=f"stripe:payment_intent:{charge.payment_intent_id}",
            kind=TransactionKind.AUTO_REFILL,
            description=f"Auto-refill by card ({profile.payment_method_label or 'saved card'})",
        )
        AutoRefillAttempt.objects.filter(pk=attempt.pk).update(
            status=RefillStatus.SUCCEEDED, payment_intent_id=charge.payment_intent_id, finished_at=timezone.now()
        )
    attempt.refresh_from_db()
    return attempt


def _refill_failed(attempt: AutoRefillAttempt, error: str) -> AutoRefillAttempt:
    """A declined card turns auto-refill off (no retry storm) and tells the org by email."""
    with transaction.atomic():
        AutoRefillAttempt.objects.filter(pk=attempt.pk).update(
            status=RefillStatus.FAILED, error=error[:500], finished_at=timezone.now()
        )
        BillingProfile.objects.filter(org=attempt.org).update(
            auto_refill_enabled=False, auto_refill_disabled_reason=f"Card declined: {error}"[:300]
        )
        activity_record(
            org=attempt.org,
            kind="billing.auto_refill_failed",
            message=f"Auto-refill of {usd_display(attempt.amount_micros)} failed ({error}); auto-refill is now off.",
        )
        event_emit(
            org_id=attempt.org_id,
            event_type="autorefill.failed",
            data={
                "org_id": attempt.org_id,
                "attempt_id": attempt.pk,
                "amount_usd": attempt.amount_micros / MICROS_PER_USD,
                "error": error[:500],
                "auto_refill_enabled": False,
            },
            dedupe_key=f"autorefill.failed:{attempt.pk}",
        )
        enqueue("billing.tasks.auto_refill_failed_email_task", attempt.pk)
    attempt.refresh_from_db()
    return attempt


def pending_attempts_older_than(age: timedelta) -> list[int]:
    cutoff = timezone.now() - age
    return list(
        AutoRefillAttempt.objects.filter(status=RefillStatus.PENDING, created_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
