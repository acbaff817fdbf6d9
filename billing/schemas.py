from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from django.conf import settings
from ninja import Schema
from pydantic import BeforeValidator, Field, WithJsonSchema

from gpucloud.core.schemas import BodyIn


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


def _dollars_as_number(value: object) -> object:
    """Every *_usd field is a JSON number, in requests as in answers: "50" is refused, as described."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number of US dollars, e.g. 25 or 12.50")
    if isinstance(value, float) and math.isclose(value, round(value, 6), rel_tol=1e-12, abs_tol=1e-12):
        # A micro-dollar amount that binary floating point could not hold exactly (3e-06 * 3 is
        # 9.000000000000001e-06): the micro-dollar it means. An amount truly finer stays refused.
        value = round(value, 6)
    return Decimal(str(value))


# Read exactly (12.5 stays 12.50, never a binary float's 12.4999...), described as numbers; the
# services refuse what the descriptions below rule out (400).
# Card payments (top-ups, auto-refill amounts) are in whole cents, within the operator's bounds.
_TOPUP = {
    "type": "number",
    "multipleOf": 0.01,
    "minimum": settings.GPUCLOUD_TOPUP_MIN_USD,
    "maximum": settings.GPUCLOUD_TOPUP_MAX_USD,
}
TopUpIn = Annotated[Decimal, BeforeValidator(_dollars_as_number), WithJsonSchema(_TOPUP)]
# Micro-dollars at most, above 0, at most a billion dollars (billing/services.USD_MAX).
PositiveUsdIn = Annotated[
    Decimal,
    BeforeValidator(_dollars_as_number),
    WithJsonSchema({"type": "number", "multipleOf": 0.000001, "exclusiveMinimum": 0, "maximum": 1_000_000_000}),
]


class AddFundsIn(BodyIn):
    amount_usd: TopUpIn = Field(
        description="25, 50, 100 or a custom amount within the operator's bounds, in whole cents"
    )
    currency: str = Field("usd", description="Only 'usd' is supported", json_schema_extra={"enum": ["usd"]})


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


class AutoRefillIn(BodyIn):
    enabled: bool
    threshold_usd: PositiveUsdIn | None = None
    amount_usd: TopUpIn | None = None


class SpendLimitIn(BodyIn):
    daily_limit_usd: PositiveUsdIn | None = Field(description="More than 0; null removes the limit")
