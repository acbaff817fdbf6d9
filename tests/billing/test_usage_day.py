"""The daily usage rollup: every usage posting counts once in its org's UTC day and service (a
replayed posting changes nothing), holds posted as usage count too, other kinds never do;
ledger_check finds a rollup that disagrees with the entries, and a rebuild restores it."""

from __future__ import annotations

import io
from datetime import UTC, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.holds import hold_open, hold_post
from billing.ledger import Line, ledger_post, org_accounts, system_account
from billing.metering import usage_charge, usage_meter_start
from billing.models import AccountKind, Service, TransactionKind, UsageDay
from billing.rollup import usage_days_from_entries, usage_days_rebuild, usage_days_stored
from billing.services import credit_grant
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


def test_usage_counts_once_per_posting_by_day_and_service(alice: Persona, charlie: Persona) -> None:
    credit_grant(org=alice.org, amount_micros=100 * USD, reason="test")
    credit_grant(org=charlie.org, amount_micros=100 * USD, reason="test")
    now = timezone.now()
    meter = usage_meter_start(
        org=alice.org, meter_key="i-1", service=Service.MODEL, description="chat", hourly_price_micros=2 * USD,
        started_at=now - timedelta(hours=1),
    )  # fmt: skip
    usage_charge(meter, meter.started_at, now - timedelta(minutes=30))
    usage_charge(meter, meter.started_at, now)
    usage_charge(meter, meter.started_at, now)  # a repeated tick bills nothing new
    hold = hold_open(org=charlie.org, amount_micros=USD, service=Service.POD, description="pod",
                     idempotency_key="h1")  # fmt: skip
    hold_post(hold_id=hold.pk, amount_micros=USD // 2)
    hold_post(hold_id=hold.pk, amount_micros=USD // 2)  # a replay of the same post
    rows = {(r.org_id, r.service): (r.day, r.spend_micros, r.gpu_seconds) for r in UsageDay.objects.all()}
    today = now.astimezone(UTC).date()
    assert rows == {
        (alice.org.pk, "model"): (today, 2 * USD, 3600),
        (charlie.org.pk, "pod"): (today, USD // 2, 0),  # a posted hold carries no GPU-seconds
    }
    assert usage_days_stored() == usage_days_from_entries()


def test_a_replayed_usage_posting_is_not_counted_again(alice: Persona) -> None:
    credit_grant(org=alice.org, amount_micros=10 * USD, reason="test")
    available, _ = org_accounts(alice.org)

    def post() -> bool:
        return ledger_post(
            idempotency_key="usage:replayed", kind=TransactionKind.USAGE, org=alice.org, service=Service.MODEL,
            description="x", metadata={"gpu_seconds": 60},
            lines=[Line(available, -USD), Line(system_account(AccountKind.REVENUE), USD)],
        ).created  # fmt: skip

    assert (post(), post()) == (True, False)
    assert list(UsageDay.objects.values_list("spend_micros", "gpu_seconds")) == [(USD, 60)]


def test_ledger_check_finds_a_rollup_that_disagrees_and_a_rebuild_restores_it(alice: Persona) -> None:
    credit_grant(org=alice.org, amount_micros=10 * USD, reason="test")
    now = timezone.now()
    meter = usage_meter_start(
        org=alice.org, meter_key="i-2", service=Service.POD, description="pod", hourly_price_micros=USD,
        started_at=now - timedelta(hours=2),
    )  # fmt: skip
    usage_charge(meter, meter.started_at, now)
    UsageDay.objects.update(spend_micros=1)
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 ledger violation"):
        call_command("ledger_check", stdout=io.StringIO(), stderr=err)
    assert "the rollup says (1, 7200), the entries (2000000, 7200)" in err.getvalue()
    out = io.StringIO()
    call_command("ledger_check", "--rebuild-usage-days", stdout=out)
    assert "Daily usage rebuilt: 1 org-day-service rows." in out.getvalue() and "Ledger OK" in out.getvalue()
    assert usage_days_rebuild() == 1
