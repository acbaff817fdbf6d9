"""REST endpoints of billing: balance, add funds, transactions (JSON and CSV), usage, settings."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from ninja import Router, Status
from pydantic import BeforeValidator, Field

from accounts.auth import api_principal
from accounts.principal import Principal
from accounts.roles import CAN_READ
from billing import schemas, selectors, services, stripe_gateway
from billing.models import BillingProfile, LedgerEntry, TransactionKind
from billing.policy import grace_period
from gpucloud.core.errors import InvalidRequest, answers
from gpucloud.core.money import MICROS_PER_USD
from gpucloud.core.spreadsheet import text_cell

router = Router(tags=["billing"])
PAGE_MAX = 200


def usd(micros: int) -> float:
    """Micro-USD as a JSON number; exact, since a float's shortest repr keeps 6 decimals here."""
    return micros / MICROS_PER_USD


def _reader(request: HttpRequest) -> Principal:
    principal = api_principal(request)
    principal.require(CAN_READ, "reading billing")
    return principal


def _balance_out(principal: Principal) -> dict[str, object]:
    org = principal.org
    balance, profile = selectors.balance_of(org), selectors.profile_of(org)
    return {
        "balance_usd": usd(balance.balance_micros),
        "available_usd": usd(balance.available_micros),
        "held_usd": usd(balance.held_micros),
        "spent_today_usd": usd(selectors.spend_today(org)),
        "daily_spend_limit_usd": None
        if profile.daily_spend_limit_micros is None
        else usd(profile.daily_spend_limit_micros),
        "grace_ends_at": profile.grace_started_at + grace_period() if profile.grace_started_at else None,
        "payments_configured": stripe_gateway.is_configured(),
        "auto_refill": _auto_refill_out(profile),
    }


def _auto_refill_out(profile: BillingProfile) -> dict[str, object]:
    return {
        "enabled": profile.auto_refill_enabled,
        "threshold_usd": usd(profile.auto_refill_threshold_micros),
        "amount_usd": usd(profile.auto_refill_amount_micros),
        "payment_method": profile.payment_method_label or None,
        "disabled_reason": profile.auto_refill_disabled_reason or None,
    }


@router.get("/billing/balance", response=schemas.BalanceOut, summary="Balance, available and held credit")
def balance(request: HttpRequest) -> dict[str, object]:
    return _balance_out(_reader(request))


def _return_urls(request: HttpRequest) -> dict[str, str]:
    return services.checkout_return_urls(request.build_absolute_uri("/billing/"))


@router.post(
    "/billing/add-funds",
    response={201: schemas.CheckoutOut},
    summary="Start a Stripe Checkout; credit is applied when Stripe's signed webhook confirms payment",
)
@answers(400, 503)
def add_funds(request: HttpRequest, payload: schemas.AddFundsIn) -> Status[dict[str, str]]:
    if payload.currency.lower() != "usd":
        raise InvalidRequest(f"Unsupported currency {payload.currency!r}: balances are in USD.", param="currency")
    amount = services.topup_to_micros(payload.amount_usd, param="amount_usd")
    checkout = services.add_funds_checkout(
        principal=api_principal(request), amount_micros=amount, **_return_urls(request)
    )
    return Status(201, {"checkout_url": checkout.url, "session_id": checkout.session_id})


@router.post("/billing/save-card", response={201: schemas.CheckoutOut}, summary="Save a card for auto-refill")
@answers(503)
def save_card(request: HttpRequest) -> Status[dict[str, str]]:
    checkout = services.save_card_checkout(principal=api_principal(request), **_return_urls(request))
    return Status(201, {"checkout_url": checkout.url, "session_id": checkout.session_id})


def _iso_date(value: object) -> object:
    """Dates are YYYY-MM-DD, as the description's format says: "0" is not 1970-01-01."""
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Since = Annotated[IsoDate | None, Field(description="From this day on")]
Until = Annotated[
    IsoDate | None, Field(description="Up to this day, included (before since, nothing matches: an empty list)")
]

# The service names the kinds in its refusal (400); the description lists them too.
KIND_ENUM: dict[str, Any] = {"enum": [*TransactionKind.values, None]}


def _filters(kind: str | None, since: date | None, until: date | None) -> dict[str, object]:
    if kind and kind not in TransactionKind.values:
        raise InvalidRequest(f"Unknown kind {kind!r}; use one of {', '.join(TransactionKind.values)}.", param="kind")
    return {
        "kind": kind,
        "since": datetime.combine(since, datetime.min.time(), tzinfo=timezone.get_current_timezone())
        if since
        else None,
        "until": datetime.combine(
            until + timedelta(days=1), datetime.min.time(), tzinfo=timezone.get_current_timezone()
        )
        if until
        else None,
    }


def _balance_after(entry: LedgerEntry) -> int:
    """A statement's entries are on the org's available account, which always records its balance
    after (only system accounts' entries do not)."""
    assert entry.balance_after_micros is not None, f"entry {entry.pk} is not an org account's"
    return entry.balance_after_micros


def _transaction_out(entry: LedgerEntry) -> dict[str, object]:
    txn = entry.transaction
    return {
        "id": entry.pk,
        "created_at": entry.created_at,
        "kind": txn.kind,
        "service": txn.service or None,
        "description": txn.description,
        "amount_usd": usd(entry.amount_micros),
        "balance_usd": usd(_balance_after(entry)),
        "overdraft": txn.overdraft,
    }


@router.get("/billing/transactions", response=schemas.TransactionPage, summary="Transaction history, newest first")
@answers(400)
def transactions(
    request: HttpRequest,
    kind: Annotated[str | None, Field(json_schema_extra=KIND_ENUM)] = None,
    since: Since = None,
    until: Until = None,
    before: int | None = None,
    limit: Annotated[int, Field(json_schema_extra={"minimum": 1, "maximum": PAGE_MAX})] = 50,
) -> dict[str, object]:
    org = _reader(request).org
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}.", param="limit")
    entries = list(selectors.statement_of(org, before_id=before, **_filters(kind, since, until))[: limit + 1])  # type: ignore[arg-type]
    page, has_more = entries[:limit], len(entries) > limit
    return {
        "data": [_transaction_out(e) for e in page],
        "has_more": has_more,
        "next_before": page[-1].pk if has_more else None,
    }


@router.get("/billing/transactions.csv", summary="Transaction history as CSV", response={200: None})
@answers(400)
def transactions_csv(
    request: HttpRequest,
    kind: Annotated[str | None, Field(json_schema_extra=KIND_ENUM)] = None,
    since: Since = None,
    until: Until = None,
) -> StreamingHttpResponse:
    org = _reader(request).org
    entries = selectors.statement_of(org, **_filters(kind, since, until))  # type: ignore[arg-type]
    response = StreamingHttpResponse(_csv_rows(entries.iterator(chunk_size=2000)), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="gpucloud-transactions-{org.pk}.csv"'
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(entries: Iterator[LedgerEntry]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(["id", "created_at", "kind", "service", "description", "amount_usd", "balance_usd"])
    for entry in entries:
        row = _transaction_out(entry)
        yield writer.writerow(
            [
                row["id"],
                entry.created_at.isoformat(),
                row["kind"],
                row["service"] or "",
                text_cell(str(row["description"])),  # names users chose appear in it
                f"{entry.amount_micros / MICROS_PER_USD:.6f}",
                f"{_balance_after(entry) / MICROS_PER_USD:.6f}",
            ]
        )


USAGE_DAYS_MAX = 366


def _usage_range(start: date | None, end: date | None, *, today: date) -> tuple[date, date]:
    """A missing bound follows the given one: a start alone reports up to today, an end alone from
    the first of its month; neither, this month. A report covers at most USAGE_DAYS_MAX days after
    its start, and says where it stopped; an end before the start is an empty report (a range that
    holds no day, as an empty filter matches nothing), not a refusal the description could not state."""
    if start is None:
        end = end or today
        return end.replace(day=1), end
    if end is None:
        end = max(today, start)
    return start, min(end, start + timedelta(days=USAGE_DAYS_MAX))


@router.get("/billing/usage", response=schemas.UsageOut, summary="Spend by service and day, GPU hours, $/GPU-hour")
def usage(
    request: HttpRequest,
    start: Annotated[IsoDate | None, Field(description="First day (default: the first of end's month)")] = None,
    end: Annotated[
        IsoDate | None,
        Field(description="Last day (default: today). A report covers at most 366 days from start: the answer's "
              "end says where it stopped. Before start: an empty report."),
    ] = None,
) -> dict[str, object]:  # fmt: skip
    org = _reader(request).org
    start, end = _usage_range(start, end, today=timezone.now().date())
    report = selectors.usage_report(org, start=start, end=end)
    average = report.average_hourly_micros
    return {
        "start": start,
        "end": end,
        "total_usd": usd(report.total_micros),
        "gpu_hours": round(report.gpu_hours, 6),
        "average_cost_per_gpu_hour_usd": None if average is None else usd(average),
        "by_service": {service: usd(v) for service, v in report.by_service.items()},
        "by_day": {day.isoformat(): usd(v) for day, v in report.by_day.items()},
    }


@router.patch("/billing/auto-refill", response=schemas.AutoRefillOut, summary="Configure auto-refill")
@answers(400, 409)
def auto_refill(request: HttpRequest, payload: schemas.AutoRefillIn) -> dict[str, object]:
    threshold, amount = payload.threshold_usd, payload.amount_usd
    profile = services.auto_refill_configure(
        principal=api_principal(request),
        enabled=payload.enabled,
        threshold_micros=None if threshold is None else services.usd_to_micros(threshold, param="threshold_usd"),
        amount_micros=None if amount is None else services.topup_to_micros(amount, param="amount_usd"),  # a payment
    )
    return _auto_refill_out(profile)


@router.patch("/billing/spend-limit", response=schemas.BalanceOut, summary="Set or clear the daily spend limit")
@answers(400)
def spend_limit(request: HttpRequest, payload: schemas.SpendLimitIn) -> dict[str, object]:
    limit = payload.daily_limit_usd
    services.spend_limit_set(
        principal=api_principal(request),
        daily_limit_micros=None if limit is None else services.usd_to_micros(limit, param="daily_limit_usd"),
    )
    return _balance_out(api_principal(request))
