"""The ledger at fleet scale (issue 19): postings of different organizations never wait on each
other (the system accounts they share are not locked), and a metering tick posts its meters in
batches, a few statements per batch rather than a transaction per meter, with the same money."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from accounts import services as account_services
from accounts.models import Organization
from billing import metering
from billing.invariants import ledger_violations
from billing.ledger import (
    InsufficientCredit,
    Line,
    PostingRequest,
    account_balance,
    ledger_post_many,
    org_accounts,
    system_account,
)
from billing.metering import cost_micros, usage_charge, usage_charge_running, usage_meter_start
from billing.models import AccountKind, LedgerTransaction, Service, TransactionKind, UsageDay, UsageMeter
from billing.selectors import balance_of
from tests.support.billing import at, fund
from tests.support.personas import Persona

USD = 1_000_000
PRICE = 3_600_000  # $3.60/hour: 1,000 micro-USD a second


def usage(org: Organization, key: str, micros: int) -> PostingRequest:
    available, _ = org_accounts(org)
    return PostingRequest(
        idempotency_key=key, kind=TransactionKind.USAGE, org=org, service="model", description="x",
        allow_overdraft=False, lines=[Line(available, -micros), Line(system_account(AccountKind.REVENUE), micros)],
    )  # fmt: skip


def test_a_batch_posts_in_order_replays_nothing_and_says_which_were_new(alice: Persona) -> None:
    fund(alice.org, 10 * USD)
    first = ledger_post_many([usage(alice.org, "a", USD), usage(alice.org, "b", 2 * USD), usage(alice.org, "a", USD)])
    assert [p.created for p in first] == [True, True, False]
    assert first[0].transaction.pk == first[2].transaction.pk
    again = ledger_post_many([usage(alice.org, "b", 2 * USD), usage(alice.org, "c", 3 * USD)])
    assert [p.created for p in again] == [False, True]
    assert balance_of(alice.org).available_micros == 4 * USD
    assert account_balance(system_account(AccountKind.REVENUE)) == 6 * USD
    assert UsageDay.objects.get(org=alice.org).spend_micros == 6 * USD
    assert ledger_violations() == []


def test_a_batch_with_one_posting_beyond_the_credit_posts_none(alice: Persona) -> None:
    fund(alice.org, 3 * USD)
    with pytest.raises(InsufficientCredit):
        ledger_post_many([usage(alice.org, "a", 2 * USD), usage(alice.org, "b", 2 * USD)])
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.USAGE).exists()
    assert balance_of(alice.org).available_micros == 3 * USD


@pytest.mark.django_db(transaction=True)
def test_postings_of_different_organizations_do_not_wait_on_each_other() -> None:
    """One organization's posting holds its transaction open; another's, on the same system account
    (revenue), commits meanwhile. Before issue 19 the second waited on the revenue row's lock."""
    _, first = account_services.user_create(email="first@example.com", password=None)
    _, second = account_services.user_create(email="second@example.com", password=None)
    fund(first, 10 * USD)
    fund(second, 10 * USD)
    org_accounts(first), org_accounts(second), system_account(AccountKind.REVENUE)  # exist, as they would
    posted, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def post_and_hold() -> None:
        try:
            with transaction.atomic():
                ledger_post_many([usage(first, "first:1", USD)])
                posted.set()
                release.wait(30)
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)
            posted.set()
        finally:
            connections.close_all()

    holder = threading.Thread(target=post_and_hold)
    holder.start()
    try:
        assert posted.wait(30)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")  # waiting on the holder fails, not hangs
            ledger_post_many([usage(second, "second:1", USD)])
    finally:
        release.set()
        holder.join(30)
    assert failures == []
    assert balance_of(first).available_micros == balance_of(second).available_micros == 9 * USD
    assert account_balance(system_account(AccountKind.REVENUE)) == 2 * USD
    assert ledger_violations() == []


def test_a_tick_posts_many_meters_in_a_few_statements_with_the_same_money(
    alice: Persona, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 meters over two orgs, batches of 16: three transactions' worth of statements (not 40), each
    meter charged exactly what usage_charge would charge it, and a second tick at the same time
    charges nothing."""
    monkeypatch.setattr(metering, "TICK_BATCH", 16)
    _, other = account_services.user_create(email="other@example.com", password=None)
    for org in (alice.org, other):
        fund(org, 100 * USD)
        for n in range(20):
            usage_meter_start(org=org, meter_key=f"{org.pk}:{n}", service=Service.MODEL,
                              description="gpu", hourly_price_micros=PRICE, started_at=at(n))  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        charged = usage_charge_running(now=at(300))
    assert sorted(charged) == sorted([alice.org.pk, other.pk])
    # About twenty statements a batch whatever its size (a transaction per meter was 15 each: 600).
    assert len(queries) <= 3 * 24, "\n".join(q["sql"][:150] for q in queries)
    expected = sum(cost_micros(PRICE, 300 - n) for n in range(20))
    assert balance_of(alice.org).available_micros == balance_of(other).available_micros == 100 * USD - expected
    paid = {m.meter_key: (m.billed_seconds, m.billed_micros) for m in UsageMeter.objects.all()}
    owed = {f"{org.pk}:{n}": (300 - n, cost_micros(PRICE, 300 - n)) for org in (alice.org, other) for n in range(20)}
    assert paid == owed  # what each meter has paid, recorded for the next tick
    assert usage_charge_running(now=at(300)) == []
    one = UsageMeter.objects.filter(org=alice.org).first()
    assert one is not None and usage_charge(one, at(0), at(300)) is None  # the single path agrees
    assert ledger_violations() == []
