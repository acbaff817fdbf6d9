"""Credit holds: reserve credit now, settle later (cold starts, spot rentals).

Opening moves the amount from the org's available account to its held account; posting
releases it and charges the used part as usage; voiding or expiring releases it all. A row
lock on the hold makes each hold resolve exactly once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from billing.ledger import Line, ledger_post, org_accounts, system_account
from billing.models import AccountKind, CreditHold, HoldStatus, Service, TransactionKind
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound


def hold_open(
    *,
    org: Organization,
    amount_micros: int,
    idempotency_key: str,
    description: str,
    service: Service | str = "",
    ttl: timedelta = timedelta(minutes=30),
) -> CreditHold:
    """Reserve credit; InsufficientCredit (402) when available credit is short. Replays return the same hold."""
    if amount_micros <= 0:
        raise InvalidRequest("A hold must be for a positive amount.", param="amount")
    existing = CreditHold.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    available, held = org_accounts(org)
    try:
        with transaction.atomic():
            hold = CreditHold.objects.create(
                org=org,
                idempotency_key=idempotency_key,
                amount_micros=amount_micros,
                service=service,
                description=description,
                expires_at=timezone.now() + ttl,
            )
            ledger_post(
                idempotency_key=f"hold:{hold.pk}:open",
                kind=TransactionKind.HOLD,
                org=org,
                service=service,
                description=f"Hold: {description}",
                lines=[Line(available, -amount_micros), Line(held, amount_micros)],
            )
    except IntegrityError:  # the same idempotency key opened concurrently
        return CreditHold.objects.get(idempotency_key=idempotency_key)
    return hold


def hold_post(*, hold_id: str, amount_micros: int, gpu_seconds: int = 0) -> CreditHold:
    """Charge `amount_micros` (0 < amount <= held) as usage and return the rest. `gpu_seconds`
    are the GPU time the charge pays for: reports divide spend by the same seconds (a first
    minute posted without its 60 seconds made the average cost per GPU-hour read high)."""
    with transaction.atomic():
        hold = _locked(hold_id)
        if hold.status == HoldStatus.POSTED and hold.posted_micros == amount_micros:
            return hold  # a replay of the same post
        _require_open(hold)
        if not 0 < amount_micros <= hold.amount_micros:
            raise InvalidRequest(
                f"Post between 1 and {hold.amount_micros} micro-USD (the held amount).", param="amount"
            )
        _release(hold, HoldStatus.POSTED)
        available, _ = org_accounts(hold.org)
        ledger_post(
            idempotency_key=f"hold:{hold.pk}:post",
            kind=TransactionKind.USAGE,
            org=hold.org,
            service=hold.service,
            description=hold.description,
            # The credit was reserved; posting succeeds even if an earlier overdraft left available short.
            allow_overdraft=True,
            lines=[Line(available, -amount_micros), Line(system_account(AccountKind.REVENUE), amount_micros)],
            metadata={"gpu_seconds": gpu_seconds} if gpu_seconds else None,
        )
        hold.posted_micros = amount_micros
        hold.save(update_fields=["posted_micros"])
    return hold


def hold_void(*, hold_id: str) -> CreditHold:
    with transaction.atomic():
        hold = _locked(hold_id)
        if hold.status == HoldStatus.VOIDED:
            return hold
        _require_open(hold)
        _release(hold, HoldStatus.VOIDED)
    return hold


def holds_expire_due(*, now: datetime | None = None) -> int:
    """Release every open hold past its expiry; safe to run any number of times."""
    now = now or timezone.now()
    expired = 0
    for hold_id in CreditHold.objects.filter(status=HoldStatus.OPEN, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            hold = _locked(hold_id)
            if hold.status == HoldStatus.OPEN:
                _release(hold, HoldStatus.EXPIRED)
                expired += 1
    return expired


def _locked(hold_id: str) -> CreditHold:
    hold = CreditHold.objects.select_for_update(of=("self",)).select_related("org").filter(pk=hold_id).first()
    if hold is None:
        raise NotFound(f"No hold {hold_id!r}.", param="hold_id")
    return hold


def _require_open(hold: CreditHold) -> None:
    if hold.status != HoldStatus.OPEN:
        raise Conflict(f"Hold {hold.pk} is already {hold.status}.")


def _release(hold: CreditHold, outcome: HoldStatus) -> None:
    available, held = org_accounts(hold.org)
    ledger_post(
        idempotency_key=f"hold:{hold.pk}:release",
        kind=TransactionKind.HOLD_RELEASE,
        org=hold.org,
        service=hold.service,
        description=f"Hold released: {hold.description}",
        lines=[Line(held, -hold.amount_micros), Line(available, hold.amount_micros)],
    )
    hold.status = outcome
    hold.resolved_at = timezone.now()
    hold.save(update_fields=["status", "resolved_at"])
