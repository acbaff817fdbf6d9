"""Per-second metering of running instances (the service the fleet calls).

A meter is one instance session. Charges are cumulative: after a charge up to time t the
session has paid exactly `price_per_hour * max(60, whole seconds since start) // 3600`, so
ticks may come late, twice or out of order and the total is still exact: a missed tick is
caught up by the next one and a repeated one finds nothing left to bill.

Once the session has ended the same holds up to its end, both ways: a tick may have billed past an
end learnt only later (a machine lost while nobody looked), and the settlement gives that back with
a usage entry of its own (the ledger is append-only), so every session is charged exactly
max(60, lifetime) seconds. A storage volume's session has no minimum: it is charged its lifetime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from billing.holds import hold_post
from billing.ledger import Line, PostingRequest, ledger_post, ledger_post_many, org_accounts, system_account
from billing.models import (
    AccountKind,
    CreditHold,
    HoldStatus,
    LedgerAccount,
    LedgerTransaction,
    Service,
    TransactionKind,
    UsageMeter,
)
from gpucloud.core.bulk_sql import update_by_pk
from gpucloud.core.durations import duration_text

MINIMUM_SECONDS = 60
SECONDS_PER_HOUR = 3600
# Running meters charged per database transaction by a tick: one transaction per meter made a tick
# of 10,000 instances take longer than the minute between ticks (issue 19).
TICK_BATCH = 500


def cost_micros(hourly_price_micros: int, seconds: int, *, minimum: int = MINIMUM_SECONDS) -> int:
    """What `seconds` of running time cost, with the session minimum applied."""
    return hourly_price_micros * max(minimum, seconds) // SECONDS_PER_HOUR


def minimum_seconds(service: str) -> int:
    """A machine's session bills at least a minute; storage bills exactly the time it was kept (a
    volume's sessions are its sizes: a grow must not add a minute)."""
    return 0 if service == Service.STORAGE else MINIMUM_SECONDS


def ticking_session(hourly_price_micros: int, started_at: datetime, *, minimum: int = MINIMUM_SECONDS) -> list[int]:
    """A running session as the pages' live tickers count it: `[hourly price, the moment (in ms) its
    minimum is used up]`. Its first charge bills the minimum, so what it has cost stands still until
    then and rises by the second after; counting from its start would show the minute twice."""
    return [hourly_price_micros, int((started_at + timedelta(seconds=minimum)).timestamp() * 1000)]


def usage_meter_start(
    *,
    org: Organization,
    meter_key: str,
    service: Service,
    description: str,
    hourly_price_micros: int,
    started_at: datetime,
    gpu_count: int = 1,
) -> UsageMeter:
    """Start billing an instance session; calling it again for the same key returns the same meter."""
    meter, _ = UsageMeter.objects.get_or_create(
        meter_key=meter_key,
        defaults={
            "org": org,
            "service": service,
            "description": description,
            "hourly_price_micros": hourly_price_micros,
            "started_at": started_at,
            "gpu_count": gpu_count,
        },
    )
    return meter


def usage_charge(meter: UsageMeter, period_start: datetime, period_end: datetime) -> LedgerTransaction | None:
    """Bill the session's running time up to `period_end`.

    The charge covers every second from the last billed one to `period_end`; a `period_start`
    later than that (a skipped tick) does not skip the seconds in between. Returns the usage
    transaction, or None when there was nothing new to bill. Idempotent per (meter, period end).
    On an ended session it settles: seconds billed past the end are given back (see above).
    """
    if period_end < period_start:
        raise ValueError("period_end is before period_start")
    with transaction.atomic():
        meter = UsageMeter.objects.select_for_update(of=("self",)).select_related("org").get(pk=meter.pk)
        charge = _charge(meter, period_end, _Accounts())
        if charge is None:
            return None
        posting = ledger_post_many([charge.request])[0] if charge.request else None
        meter.billed_seconds, meter.billed_micros = charge.billable, charge.due
        meter.save(update_fields=["billed_seconds", "billed_micros"])
    return posting.transaction if posting else None


@dataclass(frozen=True)
class _Charge:
    billable: int  # the seconds billed in all once it is posted
    due: int  # what they cost
    request: PostingRequest | None  # None when the cost did not move (a price of 0)


class _Accounts:
    """The accounts charges move money between, each looked up once (a tick's batch reads its orgs'
    available accounts in one query)."""

    def __init__(self, org_ids: Iterable[str] = ()) -> None:
        rows = LedgerAccount.objects.filter(org_id__in=list(org_ids), kind=AccountKind.AVAILABLE)
        self._available = {account.org_id: account for account in rows}
        self._revenue: LedgerAccount | None = None

    def available(self, org: Organization) -> LedgerAccount:
        if org.pk not in self._available:
            self._available[org.pk] = org_accounts(org)[0]
        return self._available[org.pk]

    def revenue(self) -> LedgerAccount:
        if self._revenue is None:
            self._revenue = system_account(AccountKind.REVENUE)
        return self._revenue


def _charge(meter: UsageMeter, period_end: datetime, accounts: _Accounts) -> _Charge | None:
    """What a locked meter owes up to `period_end` beyond what it paid; None when nothing."""
    end = min(period_end, meter.ended_at) if meter.ended_at else period_end
    seconds = max(0, int((end - meter.started_at).total_seconds()))
    billable = max(minimum_seconds(meter.service), seconds)
    if billable == meter.billed_seconds or (billable < meter.billed_seconds and meter.ended_at is None):
        return None  # nothing new, or a late tick of a running session
    due = cost_micros(meter.hourly_price_micros, billable, minimum=0)
    amount = due - meter.billed_micros
    if not amount:
        return _Charge(billable, due, None)
    request = PostingRequest(
        # A give-back's key differs from that of a charge that once went up to the same second.
        idempotency_key=f"usage:{meter.meter_key}:{billable}" + (":settled" if amount < 0 else ""),
        kind=TransactionKind.USAGE,
        org=meter.org,
        service=meter.service,
        description=_usage_description(meter, billable),
        allow_overdraft=True,  # running time already happened; the zero-balance policy stops it
        lines=[Line(accounts.available(meter.org), -amount), Line(accounts.revenue(), amount)],
        metadata={
            "meter": meter.meter_key,
            "from_s": meter.billed_seconds,
            "to_s": billable,
            "gpu_seconds": 0
            if meter.service == Service.STORAGE
            else (billable - meter.billed_seconds) * meter.gpu_count,
        },
    )
    return _Charge(billable, due, request)


def _usage_description(meter: UsageMeter, billable: int) -> str:
    if billable > meter.billed_seconds:
        return f"{meter.description} ({duration_text(billable - meter.billed_seconds)})"
    past = duration_text(meter.billed_seconds - billable)
    return f"{meter.description} (ended after {duration_text(billable)}; {past} billed past its end given back)"


def usage_meter_stop(meter: UsageMeter, at: datetime) -> LedgerTransaction | None:
    """End the session at `at` and settle it: max(60, lifetime) seconds charged in all."""
    with transaction.atomic():
        locked = UsageMeter.objects.select_for_update().get(pk=meter.pk)
        if locked.ended_at is None:
            locked.ended_at = max(at, locked.started_at)
            locked.save(update_fields=["ended_at"])
        return usage_charge(locked, locked.started_at, locked.ended_at)


def usage_charge_running(*, now: datetime | None = None) -> list[str]:
    """Charge every running meter up to `now`, TICK_BATCH meters to a database transaction; returns
    the ids of orgs that were charged."""
    now = now or timezone.now()
    running = UsageMeter.objects.filter(ended_at__isnull=True, started_at__lte=now)
    running_ids = list(running.order_by("pk").values_list("pk", flat=True))
    charged: set[str] = set()
    for first in range(0, len(running_ids), TICK_BATCH):
        charged |= _charge_batch(running_ids[first : first + TICK_BATCH], now)
    return sorted(charged)


def _charge_batch(meter_ids: list[int], now: datetime) -> set[str]:
    """One transaction: lock the meters (in primary-key order, as usage_charge locks one, before any
    account), post what each owes in one batch, and record what each has paid."""
    with transaction.atomic():
        meters = list(
            UsageMeter.objects.select_for_update(of=("self",)).select_related("org")
            .filter(pk__in=meter_ids, ended_at__isnull=True).order_by("pk")
        )  # fmt: skip
        accounts = _Accounts({meter.org_id for meter in meters})
        owed = [(meter, charge) for meter in meters if (charge := _charge(meter, now, accounts)) is not None]
        postings = ledger_post_many([charge.request for _, charge in owed if charge.request])
        for meter, charge in owed:
            meter.billed_seconds, meter.billed_micros = charge.billable, charge.due
        _billed_store([meter for meter, _ in owed])
    return {posting.transaction.org_id for posting in postings if posting.transaction.org_id}


def _billed_store(meters: list[UsageMeter]) -> None:
    """Record what these locked meters have paid, in one statement."""
    update_by_pk(
        UsageMeter, ["billed_seconds", "billed_micros"], [(m.pk, m.billed_seconds, m.billed_micros) for m in meters]
    )


def usage_prepay_from_hold(meter: UsageMeter, hold_id: str) -> None:
    """Post a first-minute hold (placed when the launch was requested) as the session's first
    60 seconds: the hold becomes the usage charge and metering continues from second 60.

    The hold was sized at the price known when it was placed; the launch may have landed on a dearer
    offer (the cheaper one was full). What the hold does not cover of the minute at the session's own
    price is charged at once beside it, so the minute is billed in full however short the session."""

    with transaction.atomic():
        meter = UsageMeter.objects.select_for_update(of=("self",)).select_related("org").get(pk=meter.pk)
        hold = CreditHold.objects.filter(pk=hold_id).first()
        if meter.billed_seconds >= MINIMUM_SECONDS or hold is None or hold.status != HoldStatus.OPEN:
            return  # already charged, or no hold: ordinary metering bills the minimum
        minute = cost_micros(meter.hourly_price_micros, MINIMUM_SECONDS)
        amount = min(minute, hold.amount_micros)
        seconds = 0 if meter.service == Service.STORAGE else MINIMUM_SECONDS * meter.gpu_count
        hold_post(hold_id=hold.pk, amount_micros=amount, gpu_seconds=seconds)
        if minute > amount:
            available, _ = org_accounts(meter.org)
            ledger_post(
                idempotency_key=f"usage:{meter.meter_key}:{MINIMUM_SECONDS}:beyond-hold",
                kind=TransactionKind.USAGE,
                org=meter.org,
                service=meter.service,
                description=f"{meter.description} (first minute, beyond its hold)",
                allow_overdraft=True,  # the machine is already running
                lines=[Line(available, amount - minute), Line(system_account(AccountKind.REVENUE), minute - amount)],
                metadata={"meter": meter.meter_key, "from_s": 0, "to_s": MINIMUM_SECONDS, "gpu_seconds": 0},
            )
        meter.billed_seconds, meter.billed_micros = MINIMUM_SECONDS, minute
        meter.save(update_fields=["billed_seconds", "billed_micros"])
