"""Emails about money, sent to an organization's owners and admins."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail

from accounts.models import Membership, Organization
from accounts.roles import Role
from billing.advice import how_to_get_credit
from billing.models import AutoRefillAttempt
from gpucloud.core.money import usd_display


def _billing_contacts(org: Organization) -> list[str]:
    return list(
        Membership.objects.filter(org=org, role__in=[Role.OWNER, Role.ADMIN]).values_list("user__email", flat=True)
    )


def zero_balance_email_send(org: Organization, deadline: datetime) -> None:
    send_mail(
        subject=f"[gpucloud] {org.name}: balance at $0.00, workloads stop at {deadline:%H:%M} UTC",
        message=(
            f"The available balance of {org.name} reached $0.00.\n\n"
            f"Running workloads will be stopped at {deadline:%Y-%m-%d %H:%M} UTC (pods keep their storage). "
            f"To keep them running, {how_to_get_credit()}:\n{settings.SITE_URL}/billing/\n"
        ),
        from_email=None,
        recipient_list=_billing_contacts(org),
    )


def auto_refill_failed_email_send(attempt: AutoRefillAttempt) -> None:
    send_mail(
        subject=f"[gpucloud] {attempt.org.name}: auto-refill failed",
        message=(
            f"We could not charge {usd_display(attempt.amount_micros)} to the saved card of {attempt.org.name}: "
            f"{attempt.error}\n\nAuto-refill is now off. Update the card and turn it back on:\n"
            f"{settings.SITE_URL}/billing/\n"
        ),
        from_email=None,
        recipient_list=_billing_contacts(attempt.org),
    )
