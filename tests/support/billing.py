"""Money for the tests: credit put on an org as a paid checkout does, usage spent, and what a
refusal must leave untouched."""

from __future__ import annotations

from datetime import datetime, timedelta

from accounts.models import Organization
from billing.ledger import Line, ledger_post, org_accounts, system_account
from billing.metering import usage_charge, usage_meter_start
from billing.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, Service, TransactionKind
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
