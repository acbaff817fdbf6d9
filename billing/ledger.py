"""Posting to the ledger: the one place that writes entries and cached balances.

Every posting:
1. locks the accounts it touches, in primary-key order (no deadlocks between postings),
2. returns the existing transaction if its idempotency key was already used (a replay changes
   nothing; the database's unique constraint backs this up),
3. checks that lines sum to zero and that no org account goes below zero (available may, only
   for a metering charge marked as overdraft),
4. inserts the transaction and entries and moves the cached balances with F(), and counts a
   usage posting in its org's UsageDay, all in one database transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import Organization, User
from billing.advice import how_to_get_credit
from billing.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Service,
    TransactionKind,
    UsageDay,
)
from gpucloud.core.errors import ApiError
from gpucloud.core.money import usd_display


class InsufficientCredit(ApiError):
    status = 402
    type = "insufficient_credit"


@dataclass(frozen=True)
class Line:
    account: LedgerAccount
    amount_micros: int


@dataclass(frozen=True)
class Posting:
    transaction: LedgerTransaction
    created: bool  # False when the idempotency key had already been used


def org_accounts(org: Organization) -> tuple[LedgerAccount, LedgerAccount]:
    """The org's (available, held) accounts, created on first use."""
    available = _account(org, AccountKind.AVAILABLE)
    held = _account(org, AccountKind.HELD)
    return available, held


def system_account(kind: AccountKind) -> LedgerAccount:
    return _account(None, kind)


def _account(org: Organization | None, kind: AccountKind) -> LedgerAccount:
    account = LedgerAccount.objects.filter(org=org, kind=kind).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(org=org, kind=kind)
    except IntegrityError:  # created concurrently
        return LedgerAccount.objects.get(org=org, kind=kind)


def ledger_post(
    *,
    idempotency_key: str,
    kind: TransactionKind,
    lines: Iterable[Line],
    description: str,
    org: Organization | None = None,
    service: Service | str = "",
    allow_overdraft: bool = False,
    reason: str = "",
    created_by: User | None = None,
    metadata: dict[str, object] | None = None,
) -> Posting:
    lines = [line for line in lines if line.amount_micros != 0]
    deltas: dict[int, int] = defaultdict(int)
    for line in lines:
        deltas[line.account.pk] += line.amount_micros
    if sum(deltas.values()) != 0:
        raise ValueError(f"ledger transaction {idempotency_key!r} does not balance: {dict(deltas)}")
    with transaction.atomic():
        locked = {a.pk: a for a in LedgerAccount.objects.select_for_update().filter(pk__in=deltas).order_by("pk")}
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return Posting(existing, created=False)
        overdraft = _check_limits(locked, deltas, allow_overdraft)
        try:
            with transaction.atomic():
                txn = LedgerTransaction.objects.create(
                    idempotency_key=idempotency_key,
                    kind=kind,
                    org=org,
                    service=service,
                    description=description[:200],
                    reason=reason,
                    overdraft=overdraft,
                    created_by=created_by,
                    metadata=metadata or {},
                )
        except IntegrityError:  # the same key committed between our check and insert
            return Posting(LedgerTransaction.objects.get(idempotency_key=idempotency_key), created=False)
        _write_entries(txn, locked, deltas)
        if kind == TransactionKind.USAGE and org is not None:
            _usage_day_add(txn, locked, deltas)
    return Posting(txn, created=True)


def _usage_day_add(txn: LedgerTransaction, locked: dict[int, LedgerAccount], deltas: dict[int, int]) -> None:
    """Count a new usage posting in its org's day (see UsageDay): what it took from available."""
    spent = -sum(
        d for pk, d in deltas.items() if locked[pk].org_id == txn.org_id and locked[pk].kind == AccountKind.AVAILABLE
    )
    if not spent:
        return
    day = txn.created_at.astimezone(UTC).date()
    seconds = int((txn.metadata or {}).get("gpu_seconds", 0))
    row, _ = UsageDay.objects.get_or_create(org_id=txn.org_id, day=day, service=txn.service)
    UsageDay.objects.filter(pk=row.pk).update(
        spend_micros=F("spend_micros") + spent, gpu_seconds=F("gpu_seconds") + seconds
    )


def _check_limits(locked: dict[int, LedgerAccount], deltas: dict[int, int], allow_overdraft: bool) -> bool:
    """Refuse what would take an org account below zero; True when an allowed overdraft happens."""
    overdraft = False
    for pk, delta in deltas.items():
        account = locked[pk]
        after = account.balance_micros + delta
        if account.org_id is None or delta >= 0 or after >= 0:
            continue
        if account.kind == AccountKind.AVAILABLE and allow_overdraft:
            overdraft = True
            continue
        raise InsufficientCredit(
            f"Insufficient credit: this needs {usd_display(-delta)} and "
            f"{usd_display(max(account.balance_micros, 0))} is available: {how_to_get_credit()}."
        )
    return overdraft


def _write_entries(txn: LedgerTransaction, locked: dict[int, LedgerAccount], deltas: dict[int, int]) -> None:
    entries = []
    for pk in sorted(deltas):
        account = locked[pk]
        account.balance_micros += deltas[pk]
        entries.append(
            LedgerEntry(
                transaction=txn,
                account=account,
                amount_micros=deltas[pk],
                balance_after_micros=account.balance_micros,
                created_at=txn.created_at,
            )
        )
        LedgerAccount.objects.filter(pk=pk).update(balance_micros=F("balance_micros") + deltas[pk])
    LedgerEntry.objects.bulk_create(entries)
