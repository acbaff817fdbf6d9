"""The ledger's invariants, checked from the rows (for `ledger_check` and the tests)."""

from __future__ import annotations

from django.db.models import Count, Q, Sum

from billing.models import AccountKind, CreditHold, HoldStatus, LedgerAccount, LedgerEntry, LedgerTransaction
from billing.rollup import usage_days_from_entries, usage_days_stored


def ledger_violations() -> list[str]:
    violations = []
    unbalanced = (
        LedgerEntry.objects.values("transaction_id")
        .annotate(total=Sum("amount_micros"))
        .exclude(total=0)
        .values_list("transaction_id", "total")
    )
    violations += [f"transaction {txn} sums to {total}, not 0" for txn, total in unbalanced]
    empty = LedgerTransaction.objects.annotate(n=Count("entries")).filter(n=0).values_list("pk", flat=True)
    violations += [f"transaction {txn} has no entries" for txn in empty]
    sums = dict(
        LedgerEntry.objects.values("account_id").annotate(total=Sum("amount_micros")).values_list("account_id", "total")
    )
    for account in LedgerAccount.objects.filter(org__isnull=True).exclude(balance_micros=0):
        violations.append(f"system account {account} caches {account.balance_micros}: system accounts keep none")
    for account in LedgerAccount.objects.filter(org__isnull=False):
        if account.balance_micros != sums.get(account.pk, 0):
            violations.append(
                f"account {account} caches {account.balance_micros} but its entries sum to {sums.get(account.pk, 0)}"
            )
        latest = LedgerEntry.objects.filter(account=account).order_by("-pk").first()
        if latest is not None and latest.balance_after_micros != account.balance_micros:
            violations.append(
                f"account {account}: its latest entry left {latest.balance_after_micros}, "
                f"the cache says {account.balance_micros}"
            )
    open_holds = dict(
        CreditHold.objects.filter(status=HoldStatus.OPEN)
        .values("org_id")
        .annotate(total=Sum("amount_micros"))
        .values_list("org_id", "total")
    )
    for account in LedgerAccount.objects.filter(kind=AccountKind.HELD):
        reserved = open_holds.get(account.org_id or "", 0)
        if account.balance_micros != reserved:
            violations.append(f"account {account} holds {account.balance_micros} but open holds total {reserved}")
    negative = LedgerAccount.objects.filter(Q(kind=AccountKind.HELD, balance_micros__lt=0))
    violations += [f"account {a} is negative" for a in negative]
    return violations + _usage_day_violations()


def _usage_day_violations() -> list[str]:

    computed, stored = usage_days_from_entries(), usage_days_stored()
    return [
        f"usage of org {org} on {day} ({service or 'other'}): the rollup says {stored.get(key)}, "
        f"the entries {computed.get(key)} (spend, GPU-seconds)"
        for key in sorted(set(computed) | set(stored), key=str)
        if computed.get(key) != stored.get(key)
        for org, day, service in [key]
    ]
