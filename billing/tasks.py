"""Billing's background work. Each task takes ids, calls one service, and is safe to run twice."""

from __future__ import annotations

from datetime import datetime, timedelta

from celery import shared_task

from accounts.models import Organization
from billing import alerts, emails, holds, metering, policy, refill, stripe_events
from billing.models import AutoRefillAttempt, BillingProfile


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def usage_tick_task() -> None:
    """Charge every running meter up to now, then react to the new balances."""
    for org_id in metering.usage_charge_running():
        balance_after_debit_task.delay(org_id)


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def balance_after_debit_task(org_id: str) -> None:
    org = Organization.objects.get(pk=org_id)
    attempt = refill.auto_refill_start(org)
    if attempt is not None:
        auto_refill_execute_task.delay(attempt.pk)
    alerts.low_balance_check(org)
    policy.zero_balance_check(org)


@shared_task(ignore_result=True, soft_time_limit=40, time_limit=60)
def auto_refill_execute_task(attempt_id: int) -> None:
    refill.auto_refill_execute(attempt_id)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def auto_refill_resume_task() -> None:
    """Finish attempts a crash left pending: same idempotency key, so never a second charge."""
    for attempt_id in refill.pending_attempts_older_than(timedelta(minutes=2)):
        auto_refill_execute_task.delay(attempt_id)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def holds_expire_task() -> None:
    holds.holds_expire_due()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def zero_balance_sweep_task() -> None:
    """Move every org in (or entering) grace forward: ends grace, or stops workloads when it runs out."""
    in_grace = BillingProfile.objects.filter(grace_started_at__isnull=False).values_list("org_id", flat=True)
    for org in Organization.objects.filter(pk__in=list(in_grace)):
        policy.zero_balance_check(org)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60, autoretry_for=(ConnectionError,), retry_backoff=5)
def stripe_event_process_task(event_pk: int) -> None:
    stripe_events.stripe_event_process(event_pk)


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def zero_balance_email_task(org_id: str, deadline_iso: str) -> None:
    emails.zero_balance_email_send(Organization.objects.get(pk=org_id), datetime.fromisoformat(deadline_iso))


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def auto_refill_failed_email_task(attempt_id: int) -> None:
    emails.auto_refill_failed_email_send(AutoRefillAttempt.objects.select_related("org").get(pk=attempt_id))
