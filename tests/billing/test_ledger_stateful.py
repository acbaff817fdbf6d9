"""A Hypothesis state machine over the ledger: random top-ups (duplicated and shuffled webhook
keys), holds opened/posted/voided/expired, metering ticks, refunds and refills, checked after
every step against a simple model of what the balances must be."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from accounts import services as account_services
from billing.holds import hold_open, hold_post, hold_void, holds_expire_due
from billing.ledger import InsufficientCredit
from billing.metering import cost_micros, usage_charge, usage_meter_start
from billing.models import CreditHold, HoldStatus, Service, TransactionKind
from billing.services import stripe_credit, stripe_refund
from gpucloud.core.env import env_int
from tests.support.billing import at

_machines = itertools.count()
amounts = st.integers(min_value=1, max_value=50_000_000)
# The suite's run stays short; a nightly-style run sets GPUCLOUD_LEDGER_MACHINE_RUNS=10000 and
# GPUCLOUD_LEDGER_MACHINE_STEPS=50 (see README, "Development").
EXAMPLES = env_int("GPUCLOUD_LEDGER_MACHINE_RUNS", 15, minimum=1)
STEPS = env_int("GPUCLOUD_LEDGER_MACHINE_STEPS", 40, minimum=1)
steps_run = {"steps": 0, "machines": 0}
PROGRESS_EVERY = 250


class LedgerMachine(RuleBasedStateMachine):
    webhook_keys = Bundle("webhook_keys")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        n = next(_machines)
        if n and n % PROGRESS_EVERY == 0:  # a long run says how far it got (any violation stops it)
            print(f"ledger state machine: {n} runs, {steps_run['steps']} checked steps so far", flush=True)
            _vacuum()
        _, self.org = account_services.user_create(email=f"prop{n}@example.com", password=None)
        self.available = 0
        self.held = 0
        self.credited: dict[str, int] = {}
        self.hold_amounts: dict[str, int] = {}
        self.meter = usage_meter_start(
            org=self.org, meter_key=f"prop-meter-{n}", service=Service.MODEL, description="m",
            hourly_price_micros=4_410_000, started_at=at(0),
        )  # fmt: skip
        self.clock = 0
        self.refunds = 0
        steps_run["machines"] += 1

    # --- money in -------------------------------------------------------------------------
    @rule(
        target=webhook_keys, amount=amounts, kind=st.sampled_from([TransactionKind.TOPUP, TransactionKind.AUTO_REFILL])
    )
    def stripe_payment(self, amount: int, kind: TransactionKind) -> str:
        key = f"stripe:checkout:cs_{self.org.pk}_{len(self.credited)}"
        stripe_credit(org=self.org, amount_micros=amount, key=key, kind=kind, description="pay")
        self.credited[key] = amount
        self.available += amount
        return key

    @rule(key=webhook_keys)
    def duplicate_webhook(self, key: str) -> None:
        """A redelivered (possibly out of order) webhook for a payment already credited."""
        posting = stripe_credit(
            org=self.org, amount_micros=self.credited[key], key=key, kind=TransactionKind.TOPUP, description="pay"
        )
        assert posting.created is False

    @rule(amount=amounts)
    def refund(self, amount: int) -> None:
        self.refunds += 1
        stripe_refund(org=self.org, amount_micros=amount, key=f"refund:{self.org.pk}:{self.refunds}", charge_id="ch")
        self.available -= amount

    # --- holds ------------------------------------------------------------------------------
    @rule(target=holds, amount=amounts)
    def open_hold(self, amount: int) -> str:
        key = f"hold-{self.org.pk}-{len(self.hold_amounts)}"
        try:
            hold = hold_open(org=self.org, amount_micros=amount, idempotency_key=key, description="cold")
        except InsufficientCredit:
            assert amount > self.available
            return "refused"
        assert amount <= self.available
        self.available -= amount
        self.held += amount
        self.hold_amounts[hold.pk] = amount
        return hold.pk

    @rule(hold_id=consumes(holds), fraction=st.floats(min_value=0.0, max_value=1.0))
    def post_hold(self, hold_id: str, fraction: float) -> None:
        if hold_id == "refused" or CreditHold.objects.get(pk=hold_id).status != HoldStatus.OPEN:
            return
        amount = self.hold_amounts[hold_id]
        used = max(1, int(amount * fraction))
        hold_post(hold_id=hold_id, amount_micros=used)
        hold_post(hold_id=hold_id, amount_micros=used)  # a replay
        self.held -= amount
        self.available += amount - used

    @rule(hold_id=consumes(holds))
    def void_hold(self, hold_id: str) -> None:
        if hold_id == "refused" or CreditHold.objects.get(pk=hold_id).status != HoldStatus.OPEN:
            return
        hold_void(hold_id=hold_id)
        hold_void(hold_id=hold_id)
        self.held -= self.hold_amounts[hold_id]
        self.available += self.hold_amounts[hold_id]

    @rule()
    def expire_holds(self) -> None:
        open_holds = CreditHold.objects.filter(org=self.org, status=HoldStatus.OPEN)
        released = sum(h.amount_micros for h in open_holds)
        holds_expire_due(now=max(h.expires_at for h in open_holds) if open_holds else None)
        holds_expire_due(now=at(10**7))  # everything older is already released: nothing more moves
        self.held -= released
        self.available += released

    # --- metering ---------------------------------------------------------------------------
    @rule(seconds=st.integers(min_value=0, max_value=7200), replay=st.booleans())
    def tick(self, seconds: int, replay: bool) -> None:
        before = self.meter.billed_micros
        self.clock += seconds
        usage_charge(self.meter, at(max(0, self.clock - seconds)), at(self.clock))
        if replay:
            usage_charge(self.meter, at(0), at(self.clock))
        self.meter.refresh_from_db()
        expected = cost_micros(4_410_000, self.clock)
        assert self.meter.billed_micros == expected
        assert self.meter.billed_seconds == max(60, self.clock)
        self.available -= expected - before

    # --- invariants -------------------------------------------------------------------------
    @invariant()
    def ledger_matches_the_model_and_balances(self) -> None:
        """Every check in one query: a step's checks cost the same at step 50 as at step 1, and the
        nightly run (10,000 runs) spends its time on the ledger, not on building checks."""
        steps_run["steps"] += 1
        with connection.cursor() as cursor:
            cursor.execute(INVARIANTS_SQL, {"org": self.org.pk})
            available, held, drifted, unbalanced, overdrawn, open_held, misreleased = cursor.fetchone()
        assert (available, held) == (self.available, self.held), "balances differ from the model"
        assert drifted == 0, "an account's cached balance differs from the sum of its entries"
        assert unbalanced == 0, "a transaction's entries do not sum to zero"
        assert self.available >= 0 or overdrawn, "negative available credit without a recorded overdraft"
        assert open_held == self.held, "held credit differs from the open holds"
        assert misreleased == 0, "a hold released other than exactly once (or released while open)"


def _vacuum() -> None:
    """What autovacuum does, done by hand (it is off on some machines, these included): without it a
    long run's system accounts pile up row versions and its tables have no statistics, and each step
    grows slower than the last (the invariants' query went from 0.5 ms to 108 ms by run 4,000)."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


# The checks above, per org: the available and held balances (the cached columns balance_of reads,
# 0 before the org's first posting);
# accounts whose cached balance is not the sum of their entries; transactions whose entries do not sum
# to zero (or that have none); whether an overdraft was recorded; the open holds' total; holds whose
# release transaction exists other than exactly once when resolved, or at all when open.
INVARIANTS_SQL = """
SELECT
  COALESCE((SELECT balance_micros FROM billing_ledgeraccount WHERE org_id = %(org)s AND kind = 'available'), 0),
  COALESCE((SELECT balance_micros FROM billing_ledgeraccount WHERE org_id = %(org)s AND kind = 'held'), 0),
  (SELECT count(*) FROM billing_ledgeraccount a WHERE a.org_id = %(org)s AND a.balance_micros
     <> COALESCE((SELECT sum(e.amount_micros) FROM billing_ledgerentry e WHERE e.account_id = a.id), 0)),
  (SELECT count(*) FROM billing_ledgertransaction t WHERE t.org_id = %(org)s AND
     (SELECT sum(e.amount_micros) FROM billing_ledgerentry e WHERE e.transaction_id = t.id) IS DISTINCT FROM 0),
  EXISTS (SELECT 1 FROM billing_ledgertransaction WHERE org_id = %(org)s AND overdraft),
  (SELECT COALESCE(sum(amount_micros), 0) FROM billing_credithold WHERE org_id = %(org)s AND status = 'open'),
  (SELECT count(*) FROM billing_credithold h WHERE h.org_id = %(org)s AND
     (SELECT count(*) FROM billing_ledgertransaction t WHERE t.idempotency_key = 'hold:' || h.id || ':release')
     <> CASE WHEN h.status = 'open' THEN 0 ELSE 1 END)
"""


# Committed step by step: in one transaction a long run's rows stay invisible to autovacuum and
# the system accounts' rows pile up versions, so each step grows slower than the one before.
@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
# The suite's per-test limit (300 s) would end a nightly run: its limit grows with its size (a step
# takes ~12 ms here; 200 ms a step is far beyond any healthy run, so a hang is still caught).
@pytest.mark.timeout(max(300, EXAMPLES * STEPS // 5))
def test_ledger_state_machine() -> None:
    LedgerMachine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    LedgerMachine.TestCase().runTest()
    print(f"\nledger state machine: {steps_run['machines']} runs, {steps_run['steps']} checked steps, 0 violations")
    assert steps_run["machines"] >= EXAMPLES
