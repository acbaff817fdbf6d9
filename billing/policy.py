"""What a balance allows: launching needs credit and room under the daily spend limit; a
balance at zero starts a grace period, after which running workloads are stopped."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import activity_record
from billing import selectors
from billing.advice import how_to_get_credit
from billing.ledger import InsufficientCredit
from billing.metering import usage_meter_stop
from billing.models import BillingProfile, UsageMeter
from gpucloud.core.jobs import enqueue, send
from gpucloud.core.money import usd_display

# The workload side's task that stops every running workload of an org (deployments/tasks.py).
WORKLOADS_STOP_TASK = "deployments.tasks.workloads_stop_for_nonpayment_task"


class SpendLimitReached(InsufficientCredit):
    type = "spend_limit_reached"


def launch_check(org: Organization, *, now: datetime | None = None) -> None:
    """Raise 402 unless the org may start something new now (called before every launch)."""
    balance = selectors.balance_of(org)
    if balance.available_micros <= 0:
        raise InsufficientCredit(f"Your available balance is $0.00: {how_to_get_credit()}, then launch again.")
    limit = selectors.profile_of(org).daily_spend_limit_micros
    if limit is not None:
        spent = selectors.spend_today(org, now=now)
        if spent >= limit:
            raise SpendLimitReached(
                f"Daily spend limit of {usd_display(limit)} reached ({usd_display(spent)} spent today, UTC). "
                "Raise the limit on the billing page or wait until 00:00 UTC."
            )


def grace_period() -> timedelta:
    return timedelta(seconds=settings.GPUCLOUD_ZERO_BALANCE_GRACE_SECONDS)


def zero_balance_check(org: Organization, *, now: datetime | None = None) -> str:
    """Advance the org's zero-balance state; returns what happened ('ok', 'grace_started',
    'grace_ended', 'in_grace', 'stopped'). Safe to run any number of times."""
    now = now or timezone.now()
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().get(pk=selectors.profile_of(org).pk)
        available = selectors.balance_of(org).available_micros
        if available > 0:
            if profile.grace_started_at is None:
                return "ok"
            profile.grace_started_at = None
            profile.save(update_fields=["grace_started_at"])
            activity_record(org=org, kind="billing.grace_ended", message="Balance restored; nothing will be stopped.")
            return "grace_ended"
        if profile.grace_started_at is None:
            return _grace_start(org, profile, now)
        if now < profile.grace_started_at + grace_period():
            return "in_grace"
    return _stop_workloads(org, now)


def _grace_start(org: Organization, profile: BillingProfile, now: datetime) -> str:
    profile.grace_started_at = now
    profile.save(update_fields=["grace_started_at"])
    deadline = now + grace_period()
    activity_record(
        org=org,
        kind="billing.grace_started",
        message=f"Balance reached $0.00: workloads stop at {deadline:%Y-%m-%d %H:%M} UTC; {how_to_get_credit()}.",
    )
    enqueue("billing.tasks.zero_balance_email_task", org.pk, deadline.isoformat())
    return "grace_started"


def _stop_workloads(org: Organization, now: datetime) -> str:
    """Grace is over: billing ends every open meter of the org now, and asks the workload side to
    stop what runs (it owns the workloads; pods keep their storage). Billing decides, it never stops
    a workload itself: the stop goes out by task name, at once (the caller holds no transaction)."""
    send(WORKLOADS_STOP_TASK, org.pk)
    meters = list(UsageMeter.objects.filter(org=org, ended_at__isnull=True))
    for meter in meters:
        usage_meter_stop(meter, now)
    activity_record(
        org=org,
        kind="billing.workloads_stopped",
        message=f"Stopping every running workload ({len(meters)} billed): the balance stayed at $0.00 past grace.",
    )
    return "stopped"
