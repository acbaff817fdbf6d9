from __future__ import annotations

from billing.holds import hold_open
from billing.invariants import ledger_violations
from billing.metering import cost_micros, usage_charge, usage_meter_start, usage_meter_stop, usage_prepay_from_hold
from billing.models import LedgerTransaction, Service, TransactionKind, UsageMeter
from billing.selectors import balance_of
from tests.support.billing import at, fund
from tests.support.personas import Persona

USD = 1_000_000
H100 = 4_410_000  # $4.41/hour


def meter(persona: Persona, key: str = "inst_1", price: int = H100) -> UsageMeter:
    return usage_meter_start(
        org=persona.org,
        meter_key=key,
        service=Service.MODEL,
        description="llama on h100",
        hourly_price_micros=price,
        started_at=at(0),
    )


def usage_total(persona: Persona) -> int:
    return -sum(
        e.amount_micros
        for t in LedgerTransaction.objects.filter(org=persona.org, kind=TransactionKind.USAGE)
        for e in t.entries.filter(account__kind="available")
    )


def test_cost_is_per_second_with_a_60_second_minimum() -> None:
    assert cost_micros(3_600_000_000, 1) == 60_000_000  # $3600/h for 1 s bills 60 s
    assert cost_micros(3_600_000_000, 61) == 61_000_000
    assert cost_micros(H100, 3600) == H100


def test_first_tick_bills_the_minimum_then_only_new_seconds(alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    m = meter(alice)
    usage_charge(m, at(0), at(10))
    assert usage_total(alice) == H100 * 60 // 3600
    assert usage_charge(m, at(10), at(59)) is None  # still inside the paid minute
    usage_charge(m, at(59), at(90))
    assert usage_total(alice) == H100 * 90 // 3600


def test_repeated_and_skipped_ticks_bill_exactly_once(alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    m = meter(alice)
    usage_charge(m, at(0), at(60))
    assert usage_charge(m, at(0), at(60)) is None  # a retried tick
    usage_charge(m, at(300), at(360))  # ticks at 120..300 were skipped by a crash
    assert usage_total(alice) == H100 * 360 // 3600
    assert usage_charge(m, at(60), at(120)) is None  # a late, out-of-order tick
    assert usage_total(alice) == H100 * 360 // 3600


def test_many_small_ticks_lose_no_fraction_of_a_micro_dollar(alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    price = 1_234_567  # does not divide 3600 evenly
    m = meter(alice, price=price)
    for second in range(61, 400, 7):
        usage_charge(m, at(second - 7), at(second))
    assert usage_total(alice) == price * 397 // 3600
    assert ledger_violations() == []


def test_stop_makes_the_final_charge_with_the_minimum(alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    m = meter(alice)
    usage_meter_stop(m, at(12))
    assert usage_total(alice) == H100 * 60 // 3600
    m.refresh_from_db()
    assert m.ended_at == at(12) and not m.is_running
    assert usage_charge(m, at(12), at(500)) is None  # nothing is billed after the end


def test_metering_may_overdraw_and_is_flagged(alice: Persona) -> None:
    fund(alice.org, 1)
    m = meter(alice)
    usage_charge(m, at(0), at(3600))
    assert balance_of(alice.org).available_micros == 1 - H100
    assert LedgerTransaction.objects.get(org=alice.org, kind=TransactionKind.USAGE).overdraft is True


def test_starting_twice_returns_the_same_meter(alice: Persona) -> None:
    assert meter(alice).pk == meter(alice).pk


def test_an_end_learnt_after_later_ticks_gives_back_what_they_billed_past_it(alice: Persona) -> None:
    """Issue 15 §2: a machine that died at 150 s but was found gone after a tick at 153 s was billed
    153 s. Stopping at its end settles the session at max(60, lifetime), once."""
    fund(alice.org, 100 * USD)
    m = meter(alice)
    usage_charge(m, at(0), at(90))
    usage_charge(m, at(90), at(153))
    stopped = usage_meter_stop(m, at(150))
    assert stopped is not None and stopped.idempotency_key == "usage:inst_1:150:settled"
    assert stopped.metadata["gpu_seconds"] == -3 and "3 s billed past its end given back" in stopped.description
    assert usage_total(alice) == H100 * 150 // 3600
    m.refresh_from_db()
    assert (m.billed_seconds, m.billed_micros) == (150, H100 * 150 // 3600)
    assert usage_meter_stop(m, at(150)) is None and usage_charge(m, at(150), at(900)) is None
    assert usage_total(alice) == H100 * 150 // 3600
    assert ledger_violations() == []  # the daily rollup counts the give-back too


def test_a_session_ended_inside_its_first_minute_keeps_the_minimum(alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    m = meter(alice)
    usage_charge(m, at(0), at(75))
    usage_meter_stop(m, at(20))
    assert usage_total(alice) == H100 * 60 // 3600


def test_a_first_minute_hold_smaller_than_the_launched_price_bills_the_whole_minute(alice: Persona) -> None:
    """The hold is sized at the price known at create; the launch fell over to a dearer offer. A
    session ended inside its first minute still pays that minute at the price it ran at."""
    fund(alice.org, 100 * USD)
    hold = hold_open(org=alice.org, amount_micros=cost_micros(2_000_000, 60), idempotency_key="first", description="m")
    m = meter(alice, price=H100)  # launched at $4.41/h, not the $2.00/h the hold was placed for
    usage_prepay_from_hold(m, hold.pk)
    usage_prepay_from_hold(m, hold.pk)  # a replay changes nothing
    usage_meter_stop(m, at(20))
    assert usage_total(alice) == cost_micros(H100, 60)
    assert balance_of(alice.org).held_micros == 0
    assert ledger_violations() == []
