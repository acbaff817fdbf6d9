"""The pages' live balance: after money moves, the org's open pages restart their ticking balance
from the new figure (the pages' consumer adds the dashboard's activity feed to the message)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from billing.selectors import balance_ticker
from gpucloud.core.live import org_push


def balance_snapshot(org: Organization) -> dict[str, Any]:
    """The org's balance ticker as the pages count from it (see billing.selectors.balance_ticker)."""
    ticker = balance_ticker(org, now=timezone.now())
    return {"available_micros": ticker.available_micros, "rate_micros": ticker.rate_micros,
            "as_of_ms": ticker.as_of_ms, "sessions": ticker.sessions}  # fmt: skip


def balance_changed_on_commit(org_id: str) -> None:
    """Money moved (a top-up, a grant, a refund): the pages' balance restarts from the new figure."""
    transaction.on_commit(lambda: _balance_push(org_id))


def _balance_push(org_id: str) -> None:
    org = Organization.objects.filter(pk=org_id).first()
    if org is not None:
        org_push(org_id, lambda: {"type": "balance.changed", "balance": balance_snapshot(org), "with_activity": True})
