"""The daily usage rollup (UsageDay) recomputed from the ledger's entries: what `ledger_check`
compares it with, and how it is rebuilt (`ledger_check --rebuild-usage-days`, bulk-loaded data)."""

from __future__ import annotations

from datetime import UTC, date

from django.db import transaction
from django.db.models import BigIntegerField, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncDate

from billing.ledger import system_account
from billing.models import AccountKind, LedgerAccount, LedgerEntry, TransactionKind, UsageDay

DayKey = tuple[str, date, str]  # org id, UTC day, service


def usage_days_from_entries() -> dict[DayKey, tuple[int, int]]:
    """(spend, GPU-seconds) per org, day and service, summed from the usage entries on each org's
    available account."""
    seconds = Cast(KeyTextTransform("gpu_seconds", "transaction__metadata"), BigIntegerField())
    rows = (
        LedgerEntry.objects.filter(
            account__kind=AccountKind.AVAILABLE, transaction__kind=TransactionKind.USAGE, transaction__org__isnull=False
        )
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("transaction__org_id", "day", "transaction__service")
        .annotate(spent=Sum("amount_micros"), seconds=Sum(seconds))
    )
    return {
        (r["transaction__org_id"], r["day"], r["transaction__service"]): (-r["spent"], r["seconds"] or 0)
        for r in rows
        if r["spent"]
    }


def usage_days_stored() -> dict[DayKey, tuple[int, int]]:
    return {
        (org_id, day, service): (spent, seconds)
        for org_id, day, service, spent, seconds in UsageDay.objects.values_list(
            "org_id", "day", "service", "spend_micros", "gpu_seconds"
        )
        if spent or seconds
    }


def usage_days_rebuild() -> int:
    """Replace every UsageDay row with what the entries say; returns how many rows there are.
    Every usage posting locks the revenue account, so holding it keeps postings out meanwhile."""
    with transaction.atomic():
        revenue = system_account(AccountKind.REVENUE)
        LedgerAccount.objects.select_for_update().filter(pk=revenue.pk).first()
        computed = usage_days_from_entries()
        UsageDay.objects.all().delete()
        UsageDay.objects.bulk_create(
            UsageDay(org_id=org_id, day=day, service=service, spend_micros=spent, gpu_seconds=seconds)
            for (org_id, day, service), (spent, seconds) in computed.items()
        )
    return len(computed)
