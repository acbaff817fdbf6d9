"""Real concurrency on PostgreSQL: row locks, not luck, keep the ledger right."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from accounts import services as account_services
from billing import refill
from billing.invariants import ledger_violations
from billing.ledger import InsufficientCredit, Line, ledger_post, org_accounts, system_account
from billing.models import AccountKind, AutoRefillAttempt, BillingProfile, LedgerEntry, TransactionKind
from billing.selectors import balance_of
from tests.support.billing import fund

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock concurrency is a PostgreSQL property"),
]
THREADS = 50
AFFORDABLE = 17
PRICE = 3_000_000


def test_fifty_threads_debit_an_account_that_affords_exactly_n(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_never_called"  # refill needs payments on; nothing here calls Stripe
    _, org = account_services.user_create(email="race@example.com", password=None)
    fund(org, AFFORDABLE * PRICE)
    BillingProfile.objects.update_or_create(
        org=org,
        defaults={
            "auto_refill_enabled": True,
            "auto_refill_threshold_micros": 10 * PRICE,
            "stripe_payment_method_id": "pm_saved",
            "stripe_customer_id": "cus_saved",
        },
    )
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def debit(n: int) -> None:
        try:
            available, _ = org_accounts(org)
            barrier.wait(timeout=30)
            try:
                ledger_post(
                    idempotency_key=f"race:{n}",
                    kind=TransactionKind.USAGE,
                    org=org,
                    description="race",
                    lines=[Line(available, -PRICE), Line(system_account(AccountKind.REVENUE), PRICE)],
                )
                result = "ok"
            except InsufficientCredit:
                result = "refused"
            refill.auto_refill_start(org)
            with lock:
                outcomes.append(result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=debit, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert outcomes.count("ok") == AFFORDABLE
    assert outcomes.count("refused") == THREADS - AFFORDABLE
    assert balance_of(org).available_micros == 0
    running = [e.balance_after_micros for e in LedgerEntry.objects.filter(account__org=org).order_by("pk")]
    assert None not in running and min(b for b in running if b is not None) >= 0  # never negative at any point
    assert ledger_violations() == []  # no lost update: cache == entries
    assert AutoRefillAttempt.objects.filter(org=org).count() == 1
