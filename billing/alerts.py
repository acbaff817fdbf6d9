"""Telling an org its credit runs low: `balance.low` once per fall below the threshold
(GPUCLOUD_LOW_BALANCE_USD), armed again once the balance is back above it."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from billing import selectors
from billing.models import BillingProfile
from gpucloud.core.money import MICROS_PER_USD
from webhooks.events import event_emit


def low_balance_threshold_micros() -> int:
    return settings.GPUCLOUD_LOW_BALANCE_USD * MICROS_PER_USD


def low_balance_check(org: Organization, *, now: datetime | None = None) -> bool:
    """True when this call found the balance newly below the threshold (and fired balance.low).
    Safe to run any number of times."""
    now = now or timezone.now()
    threshold = low_balance_threshold_micros()
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().get(pk=selectors.profile_of(org).pk)
        available = selectors.balance_of(org).available_micros
        if available >= threshold:
            if profile.low_balance_since is not None:
                profile.low_balance_since = None
                profile.save(update_fields=["low_balance_since"])
            return False
        if profile.low_balance_since is not None:
            return False
        profile.low_balance_since = now
        profile.save(update_fields=["low_balance_since"])
        event_emit(
            org_id=org.pk,
            event_type="balance.low",
            data={
                "org_id": org.pk,
                "available_usd": available / MICROS_PER_USD,
                "threshold_usd": threshold / MICROS_PER_USD,
                "auto_refill_enabled": profile.auto_refill_enabled,
            },
            dedupe_key=f"balance.low:{org.pk}:{now.isoformat()}",
        )
        return True
