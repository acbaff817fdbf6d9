"""Reads of billing data. Balances come from the cached account rows (two indexed rows,
constant time however many entries exist); reports read the daily usage rollup."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import Organization
from billing.metering import cost_micros, minimum_seconds, ticking_session
from billing.models import (
    AccountKind,
    BillingProfile,
    LedgerAccount,
    LedgerEntry,
    UsageDay,
    UsageMeter,
)


@dataclass(frozen=True)
class Balance:
    balance_micros: int
    available_micros: int
    held_micros: int


def balance_of(org: Organization) -> Balance:
    balances = dict(
        LedgerAccount.objects.filter(org=org, kind__in=[AccountKind.AVAILABLE, AccountKind.HELD]).values_list(
            "kind", "balance_micros"
        )
    )
    available, held = balances.get(AccountKind.AVAILABLE, 0), balances.get(AccountKind.HELD, 0)
    return Balance(balance_micros=available + held, available_micros=available, held_micros=held)


@dataclass(frozen=True)
class BalanceTicker:
    """The spendable balance as pages tick it: what is available at `as_of` once the running
    sessions' unbilled seconds are counted, how fast it falls once every session runs past its
    minimum (their summed hourly rate), and the sessions it falls by (`ticking_session`: a session
    in its first minute has billed that minute already, so it takes nothing more until it ends)."""

    available_micros: int
    rate_micros: int
    as_of: datetime
    sessions: list[list[int]] = field(default_factory=list)

    @property
    def as_of_ms(self) -> int:
        return int(self.as_of.timestamp() * 1000)


def balance_ticker(org: Organization, *, now: datetime | None = None) -> BalanceTicker:
    """Two queries: the org's accounts and its open usage meters. Metering bills each open
    session up to its last tick; the rest is what it has cost since, to the second."""
    now = now or timezone.now()
    unbilled = rate = 0
    sessions = []
    meters = UsageMeter.objects.filter(org=org, ended_at__isnull=True).order_by("pk")
    for price, started_at, billed, service in meters.values_list(
        "hourly_price_micros", "started_at", "billed_micros", "service"
    ):
        seconds = max(0, int((now - started_at).total_seconds()))
        unbilled += max(0, cost_micros(price, seconds, minimum=minimum_seconds(service)) - billed)
        rate += price
        sessions.append(ticking_session(price, started_at, minimum=minimum_seconds(service)))
    available = balance_of(org).available_micros - unbilled
    return BalanceTicker(available_micros=available, rate_micros=rate, as_of=now, sessions=sessions)


def profile_of(org: Organization) -> BillingProfile:
    profile, _ = BillingProfile.objects.get_or_create(org=org)
    return profile


def statement_of(
    org: Organization,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
) -> QuerySet[LedgerEntry]:
    """The org's statement: entries on its available account, newest first.

    Each entry's amount is what the transaction did to spendable credit and its
    balance_after the credit left; holds show as a debit and their release as a credit.
    """
    entries = LedgerEntry.objects.filter(account__org=org, account__kind=AccountKind.AVAILABLE)
    if kind:
        entries = entries.filter(transaction__kind=kind)
    if since:
        entries = entries.filter(created_at__gte=since)
    if until:
        entries = entries.filter(created_at__lt=until)
    if before_id:
        entries = entries.filter(pk__lt=before_id)
    return entries.select_related("transaction").order_by("-pk")


def spend_today(org: Organization, *, now: datetime | None = None) -> int:
    """Usage charged to the org today (UTC), in micro-USD (a positive number), from the daily
    rollup that each usage posting updates in its own transaction (so it is exact)."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return UsageDay.objects.filter(org=org, day=today).aggregate(total=Sum("spend_micros"))["total"] or 0


@dataclass
class UsageReport:
    start: date
    end: date  # inclusive
    total_micros: int = 0
    gpu_seconds: int = 0
    by_service: dict[str, int] = field(default_factory=dict)
    by_day: dict[date, int] = field(default_factory=dict)

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    @property
    def average_hourly_micros(self) -> int | None:
        return self.total_micros * 3600 // self.gpu_seconds if self.gpu_seconds else None


def usage_month_to_date(org: Organization, *, now: datetime | None = None) -> UsageReport:
    """The usage report from the first of this month (UTC) to today."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return usage_report(org, start=today.replace(day=1), end=today)


def usage_report(org: Organization, *, start: date, end: date) -> UsageReport:
    """Spend by service and by day, GPU hours and average cost per GPU-hour for [start, end] (UTC
    days), from the org's daily usage rollup (a month is a few dozen rows however busy)."""
    report = UsageReport(start=start, end=end)
    report.by_day = {start + timedelta(days=n): 0 for n in range((end - start).days + 1)}
    days = UsageDay.objects.filter(org=org, day__gte=start, day__lte=end)
    for day, service, spent, seconds in days.values_list("day", "service", "spend_micros", "gpu_seconds"):
        report.total_micros += spent
        report.gpu_seconds += seconds
        report.by_day[day] += spent
        report.by_service[service or "other"] = report.by_service.get(service or "other", 0) + spent
    report.by_service = dict(sorted(report.by_service.items(), key=lambda item: -item[1]))
    return report
