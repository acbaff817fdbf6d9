from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.holds import hold_open, hold_post, hold_void, holds_expire_due
from billing.invariants import ledger_violations
from billing.ledger import InsufficientCredit, Line, account_balance, ledger_post, org_accounts, system_account
from billing.models import AccountKind, CreditHold, HoldStatus, TransactionKind
from billing.selectors import balance_of
from gpucloud.core.errors import Conflict
from tests.support.billing import fund, ledger_snapshot
from tests.support.personas import Persona

USD = 1_000_000


def test_a_posting_balances_and_moves_cached_balances(alice: Persona) -> None:
    fund(alice.org, 25 * USD, key="k1")
    assert balance_of(alice.org).available_micros == 25 * USD
    assert account_balance(system_account(AccountKind.STRIPE_CLEARING)) == -25 * USD
    assert ledger_violations() == []


def test_replaying_an_idempotency_key_changes_nothing(alice: Persona) -> None:
    fund(alice.org, 25 * USD, key="stripe:checkout:cs_1")
    before = ledger_snapshot()
    fund(alice.org, 25 * USD, key="stripe:checkout:cs_1")
    assert ledger_snapshot() == before
    assert balance_of(alice.org).available_micros == 25 * USD


def test_unbalanced_lines_are_a_programming_error(alice: Persona) -> None:
    available, _ = org_accounts(alice.org)
    with pytest.raises(ValueError, match="does not balance"):
        ledger_post(idempotency_key="x", kind=TransactionKind.ADJUSTMENT, description="x", lines=[Line(available, 5)])


def test_a_debit_beyond_available_is_refused_and_changes_nothing(alice: Persona) -> None:
    fund(alice.org, 1 * USD)
    available, _ = org_accounts(alice.org)
    before = ledger_snapshot()
    with pytest.raises(InsufficientCredit, match=r"needs \$2.00 and \$1.00 is available"):
        ledger_post(
            idempotency_key="too-much",
            kind=TransactionKind.USAGE,
            org=alice.org,
            description="x",
            lines=[Line(available, -2 * USD), Line(system_account(AccountKind.REVENUE), 2 * USD)],
        )
    assert ledger_snapshot() == before


def test_an_allowed_overdraft_is_flagged(alice: Persona) -> None:
    available, _ = org_accounts(alice.org)
    posting = ledger_post(
        idempotency_key="meter",
        kind=TransactionKind.USAGE,
        org=alice.org,
        description="x",
        allow_overdraft=True,
        lines=[Line(available, -3), Line(system_account(AccountKind.REVENUE), 3)],
    )
    assert posting.transaction.overdraft is True
    assert balance_of(alice.org).available_micros == -3
    assert ledger_violations() == []


def test_hold_open_post_returns_the_rest(alice: Persona) -> None:
    fund(alice.org, 10 * USD)
    hold = hold_open(org=alice.org, amount_micros=4 * USD, idempotency_key="cold:1", description="cold start")
    assert balance_of(alice.org) == type(balance_of(alice.org))(10 * USD, 6 * USD, 4 * USD)
    hold_post(hold_id=hold.pk, amount_micros=1 * USD)
    hold.refresh_from_db()
    assert hold.status == HoldStatus.POSTED and hold.posted_micros == 1 * USD
    balance = balance_of(alice.org)
    assert (balance.available_micros, balance.held_micros) == (9 * USD, 0)
    assert ledger_violations() == []


def test_a_hold_resolves_exactly_once(alice: Persona) -> None:
    fund(alice.org, 10 * USD)
    hold = hold_open(org=alice.org, amount_micros=4 * USD, idempotency_key="h", description="x")
    hold_void(hold_id=hold.pk)
    before = ledger_snapshot()
    hold_void(hold_id=hold.pk)  # a replay is a no-op
    with pytest.raises(Conflict, match="already voided"):
        hold_post(hold_id=hold.pk, amount_micros=1)
    assert ledger_snapshot() == before
    assert balance_of(alice.org).available_micros == 10 * USD


def test_hold_replay_returns_the_same_hold(alice: Persona) -> None:
    fund(alice.org, 10 * USD)
    first = hold_open(org=alice.org, amount_micros=1 * USD, idempotency_key="same", description="x")
    second = hold_open(org=alice.org, amount_micros=1 * USD, idempotency_key="same", description="x")
    assert first.pk == second.pk and CreditHold.objects.count() == 1
    assert balance_of(alice.org).held_micros == 1 * USD


def test_a_hold_beyond_available_is_refused_and_leaves_no_row(alice: Persona) -> None:
    fund(alice.org, 1 * USD)
    before = ledger_snapshot()
    with pytest.raises(InsufficientCredit):
        hold_open(org=alice.org, amount_micros=2 * USD, idempotency_key="big", description="x")
    assert ledger_snapshot() == before and not CreditHold.objects.exists()


def test_expired_holds_release_everything_once(alice: Persona) -> None:

    fund(alice.org, 10 * USD)
    hold = hold_open(org=alice.org, amount_micros=3 * USD, idempotency_key="e", description="x")
    assert holds_expire_due(now=timezone.now()) == 0
    later = timezone.now() + timedelta(hours=1)
    assert holds_expire_due(now=later) == 1
    assert holds_expire_due(now=later) == 0
    hold.refresh_from_db()
    assert hold.status == HoldStatus.EXPIRED
    assert balance_of(alice.org).available_micros == 10 * USD
    assert ledger_violations() == []
