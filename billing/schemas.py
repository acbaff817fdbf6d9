from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from ninja import Schema
from pydantic import Field


class AutoRefillOut(Schema):
    enabled: bool
    threshold_usd: float
    amount_usd: float
    payment_method: str | None = Field(description="The saved card, e.g. 'visa •••• 4242'")
    disabled_reason: str | None


class BalanceOut(Schema):
    balance_usd: float = Field(description="available + held")
    available_usd: float = Field(description="What new work can spend")
    held_usd: float = Field(description="Reserved by open credit holds")
    currency: str = "usd"
    spent_today_usd: float
    daily_spend_limit_usd: float | None
    grace_ends_at: datetime | None = Field(description="When running workloads stop if the balance stays at $0")
    payments_configured: bool
    auto_refill: AutoRefillOut


class AddFundsIn(Schema):
    amount_usd: Decimal = Field(description="25, 50, 100 or a custom amount within the operator's bounds")
    currency: str = Field("usd", description="Only 'usd' is supported")


class CheckoutOut(Schema):
    checkout_url: str
    session_id: str


class TransactionOut(Schema):
    id: int
    created_at: datetime
    kind: str
    service: str | None
    description: str
    amount_usd: float = Field(description="Change to available credit (negative = money out)")
    balance_usd: float = Field(description="Available credit right after")
    overdraft: bool


class TransactionPage(Schema):
    data: list[TransactionOut]
    has_more: bool
    next_before: int | None = Field(description="Pass as ?before= to load the next (older) page")


class UsageOut(Schema):
    start: date
    end: date
    total_usd: float
    gpu_hours: float
    average_cost_per_gpu_hour_usd: float | None
    by_service: dict[str, float]
    by_day: dict[str, float]


class AutoRefillIn(Schema):
    enabled: bool
    threshold_usd: Decimal | None = None
    amount_usd: Decimal | None = None


class SpendLimitIn(Schema):
    daily_limit_usd: Decimal | None = Field(description="null removes the limit")
