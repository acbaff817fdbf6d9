"""Posting to the ledger: the one place that writes entries and cached balances.

Every posting (or batch of postings, one database transaction):
1. locks the organizations' accounts it touches, in primary-key order (no deadlocks between
   postings). System accounts (Stripe clearing, promotional, revenue) are the other side of nearly
   every posting: they are neither locked nor given a cached balance, so postings of different
   organizations never wait on each other. A system account's balance is the sum of its entries
   (account_balance), and its entries carry no balance_after;
2. returns the existing transaction if its idempotency key was already used (a replay changes
   nothing; the database's unique constraint backs this up),
3. checks that lines sum to zero and that no org account goes below zero (available may, only
   for a metering charge marked as overdraft),
4. inserts the transactions and entries, sets the org accounts' cached balances (locked: exact), and
   counts a usage posting in its org's UsageDay.

A metering tick posts its meters in batches (ledger_post_many): one transaction and a handful of
statements for hundreds of postings, instead of a transaction each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

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
from gpucloud.core.bulk_sql import db_value, insert_rows, update_by_pk
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


@dataclass(frozen=True)
class PostingRequest:
    """One posting, as ledger_post takes it (for ledger_post_many)."""

    idempotency_key: str
    kind: TransactionKind
    lines: Sequence[Line]
    description: str
    org: Organization | None = None
    service: Service | str = ""
    allow_overdraft: bool = False
    reason: str = ""
    created_by: User | None = None
    metadata: dict[str, object] = field(default_factory=dict)

    def deltas(self) -> dict[int, int]:
        """The amount per account, checked to balance."""
        deltas: dict[int, int] = defaultdict(int)
        for line in self.lines:
            if line.amount_micros:
                deltas[line.account.pk] += line.amount_micros
        if sum(deltas.values()) != 0:
            raise ValueError(f"ledger transaction {self.idempotency_key!r} does not balance: {dict(deltas)}")
        return {pk: d for pk, d in deltas.items() if d}


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
    request = PostingRequest(
        idempotency_key=idempotency_key, kind=kind, lines=list(lines), description=description, org=org,
        service=service, allow_overdraft=allow_overdraft, reason=reason, created_by=created_by,
        metadata=metadata or {},
    )  # fmt: skip
    return ledger_post_many([request])[0]


def ledger_post_many(requests: Sequence[PostingRequest]) -> list[Posting]:
    """Post each request, in order, in one database transaction: all or (InsufficientCredit,
    ValueError) none. A request whose key was already used, here or earlier, is not posted again."""
    deltas = [request.deltas() for request in requests]
    accounts = {line.account.pk: line.account for request in requests for line in request.lines}
    with transaction.atomic():
        locked = _lock_org_accounts(sorted(pk for pk, a in accounts.items() if a.org_id is not None))
        keys_asked = [request.idempotency_key for request in requests]
        existing = LedgerTransaction.objects.in_bulk(keys_asked, field_name="idempotency_key")
        balances = {pk: account.balance_micros for pk, account in locked.items()}
        new: list[tuple[PostingRequest, dict[int, int], bool]] = []
        keys = set(existing)
        for request, request_deltas in zip(requests, deltas, strict=True):
            if request.idempotency_key not in keys:
                keys.add(request.idempotency_key)
                overdraft = _check_limits(locked, balances, request_deltas, request.allow_overdraft)
                new.append((request, request_deltas, overdraft))
        try:
            with transaction.atomic():
                made = LedgerTransaction.objects.bulk_create([_transaction(r, overdraft) for r, _, overdraft in new])
        except IntegrityError:  # a key committed between our check and insert: each on its own
            if len(requests) == 1:
                key = requests[0].idempotency_key
                return [Posting(LedgerTransaction.objects.get(idempotency_key=key), created=False)]
            return [ledger_post_many([request])[0] for request in requests]
        _write_entries(made, [d for _, d, _ in new], {**accounts, **locked})
        _usage_days_add(made, [d for _, d, _ in new], locked)
    return _postings(requests, existing, made)


def _postings(
    requests: Sequence[PostingRequest], existing: dict[str, LedgerTransaction], made: list[LedgerTransaction]
) -> list[Posting]:
    """Each request's posting: made now (the first request of its key), or there already."""
    by_key = {**existing, **{txn.idempotency_key: txn for txn in made}}
    unclaimed = {txn.idempotency_key for txn in made}
    postings = []
    for request in requests:
        key = request.idempotency_key
        postings.append(Posting(by_key[key], created=key in unclaimed))
        unclaimed.discard(key)
    return postings


def account_balance(account: LedgerAccount) -> int:
    """An account's balance: an org account's cached one; a system account's sum of entries (it
    keeps none, see the module's docstring)."""
    if account.org_id is not None:
        return LedgerAccount.objects.values_list("balance_micros", flat=True).get(pk=account.pk)
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount_micros"))["total"] or 0


def _lock_org_accounts(pks: list[int]) -> dict[int, LedgerAccount]:
    return {a.pk: a for a in LedgerAccount.objects.select_for_update().filter(pk__in=pks).order_by("pk")}


def _transaction(request: PostingRequest, overdraft: bool) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=request.idempotency_key, kind=request.kind, org=request.org, service=request.service,
        description=request.description[:200], reason=request.reason, overdraft=overdraft,
        created_by=request.created_by, metadata=request.metadata,
    )  # fmt: skip


def _usage_days_add(
    made: Sequence[LedgerTransaction], deltas: Sequence[dict[int, int]], locked: dict[int, LedgerAccount]
) -> None:
    """Count new usage postings in their org's day (see UsageDay): what each took from available."""
    days: dict[tuple[str, date, str], list[int]] = defaultdict(lambda: [0, 0])
    for txn, txn_deltas in zip(made, deltas, strict=True):
        if txn.kind != TransactionKind.USAGE or txn.org_id is None:
            continue
        spent = -sum(
            d for pk, d in txn_deltas.items()
            if pk in locked and locked[pk].org_id == txn.org_id and locked[pk].kind == AccountKind.AVAILABLE
        )  # fmt: skip
        if spent:
            totals = days[(txn.org_id, txn.created_at.astimezone(UTC).date(), txn.service)]
            totals[0] += spent
            totals[1] += int((txn.metadata or {}).get("gpu_seconds", 0))
    if not days:
        return
    rows = sorted((org_id, day, service, spent, seconds) for (org_id, day, service), (spent, seconds) in days.items())
    table = UsageDay._meta.db_table
    with connection.cursor() as cursor:  # one statement for the batch; Django's upsert cannot add to a column
        cursor.execute(
            f"INSERT INTO {table} (org_id, day, service, spend_micros, gpu_seconds) "  # noqa: S608 - model's table
            f"VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(rows))} "
            f"ON CONFLICT (org_id, day, service) DO UPDATE SET "
            f"spend_micros = {table}.spend_micros + EXCLUDED.spend_micros, "
            f"gpu_seconds = {table}.gpu_seconds + EXCLUDED.gpu_seconds",
            [value for row in rows for value in row],
        )


def _check_limits(
    locked: dict[int, LedgerAccount], balances: dict[int, int], deltas: dict[int, int], allow_overdraft: bool
) -> bool:
    """Refuse what would take an org account below zero; True when an allowed overdraft happens.
    `balances` are the org accounts' balances before this posting, moved by it when it passes."""
    overdraft = False
    for pk, delta in deltas.items():
        if pk not in locked:  # a system account: it may go negative (what it gave)
            continue
        after = balances[pk] + delta
        if delta >= 0 or after >= 0:
            continue
        if locked[pk].kind == AccountKind.AVAILABLE and allow_overdraft:
            overdraft = True
            continue
        raise InsufficientCredit(
            f"Insufficient credit: this needs {usd_display(-delta)} and "
            f"{usd_display(max(balances[pk], 0))} is available: {how_to_get_credit()}."
        )
    for pk, delta in deltas.items():
        if pk in balances:
            balances[pk] += delta
    return overdraft


def _write_entries(
    made: Sequence[LedgerTransaction], deltas: Sequence[dict[int, int]], accounts: dict[int, LedgerAccount]
) -> None:
    """The entries of the new transactions, and the org accounts' cached balances moved by them."""
    rows: list[tuple[Any, ...]] = []
    moved: dict[int, int] = defaultdict(int)
    for txn, txn_deltas in zip(made, deltas, strict=True):
        created_at = db_value(LedgerEntry, "created_at", txn.created_at)
        for pk in sorted(txn_deltas):
            account, delta = accounts[pk], txn_deltas[pk]
            after = None
            if account.org_id is not None:
                account.balance_micros += delta
                moved[pk] += delta
                after = account.balance_micros
            rows.append((txn.pk, pk, delta, after, created_at))
    insert_rows(LedgerEntry, _ENTRY_FIELDS, rows)
    _balances_store([accounts[pk] for pk, delta in moved.items() if delta])


_ENTRY_FIELDS = ("transaction", "account", "amount_micros", "balance_after_micros", "created_at")


def _balances_store(accounts: list[LedgerAccount]) -> None:
    """Set these locked org accounts' cached balances (exact: nobody else moves them meanwhile) in one statement."""
    update_by_pk(LedgerAccount, ["balance_micros"], [(account.pk, account.balance_micros) for account in accounts])
