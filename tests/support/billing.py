"""Money for the tests: credit put on an org as a paid checkout does, usage spent, what a refusal
must leave untouched, and what the ledger charged for each instance session."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q

from accounts.models import Organization
from billing.ledger import Line, ledger_post, org_accounts, system_account
from billing.metering import cost_micros, usage_charge, usage_meter_start
from billing.models import (
    AccountKind,
    CreditHold,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Service,
    TransactionKind,
    UsageMeter,
)
from fleet.models import FINAL_STATES, Instance
from fleet.provisioning import first_minute_hold_key
from tests.support.personas import Persona


def fund(org: Organization, micros: int, key: str = "") -> None:
    """Put credit on an org the way a paid Stripe checkout does."""
    available, _ = org_accounts(org)
    ledger_post(
        idempotency_key=key or f"test-fund:{org.pk}:{LedgerTransaction.objects.count()}",
        kind=TransactionKind.TOPUP,
        org=org,
        description="test funds",
        lines=[Line(system_account(AccountKind.STRIPE_CLEARING), -micros), Line(available, micros)],
    )


def ledger_snapshot() -> tuple[int, int, list[tuple[int, int]]]:
    """Everything that a refused operation must leave untouched (an empty account row that a
    lookup created on the way is not money, so zero balances are left out)."""

    return (
        LedgerTransaction.objects.count(),
        LedgerEntry.objects.count(),
        sorted(LedgerAccount.objects.exclude(balance_micros=0).values_list("pk", "balance_micros")),
    )


def at(seconds: float) -> datetime:
    return datetime(2026, 11, 2, 12, 0, 0).astimezone() + timedelta(seconds=seconds)


def spend_down(persona: Persona, micros: int) -> None:
    """Usage that takes `micros` off the balance: a minute at 60x that rate."""
    meter = usage_meter_start(
        org=persona.org, meter_key=f"spend-{micros}", service=Service.MODEL, description="llm",
        hourly_price_micros=micros * 60, started_at=at(0),
    )  # fmt: skip
    usage_charge(meter, at(0), at(60))


def session_charges(instance: Instance) -> tuple[int, int]:
    """What the ledger took from the org's available credit for the instance's session, and the
    GPU-seconds those postings say they paid for: its first-minute hold's post and its meter's
    usage postings (corrections included)."""
    hold = CreditHold.objects.get(idempotency_key=first_minute_hold_key(instance.pk))
    mine = LedgerEntry.objects.filter(
        Q(transaction__idempotency_key=f"hold:{hold.pk}:post") | Q(transaction__metadata__meter=instance.pk),
        account__kind=AccountKind.AVAILABLE,
        transaction__kind=TransactionKind.USAGE,
    ).select_related("transaction")
    return -sum(e.amount_micros for e in mine), sum(int(e.transaction.metadata.get("gpu_seconds", 0)) for e in mine)


def billing_mismatches() -> list[str]:
    """Every ended session: billed (in the ledger) exactly max(60, lifetime) seconds at its price."""
    found = []
    for instance in Instance.objects.filter(state__in=FINAL_STATES).exclude(launched_at=None):
        assert instance.terminated_at is not None and instance.launched_at is not None
        lifetime = int((instance.terminated_at - instance.launched_at).total_seconds())
        seconds = max(60, lifetime)
        meter = UsageMeter.objects.get(meter_key=instance.pk)
        charged = session_charges(instance)
        expected = (cost_micros(instance.hourly_price_micros, lifetime), seconds)
        if charged != expected or meter.ended_at != instance.terminated_at or meter.billed_seconds != seconds:
            found.append(f"{instance.pk} lived {lifetime} s: the ledger charged {charged}, not {expected}")
    return found
