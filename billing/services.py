"""Writes of billing: money in (Stripe top-ups, operator credit), billing settings."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from accounts.models import Organization, User
from accounts.principal import Principal
from accounts.roles import CAN_MANAGE_MEMBERS
from billing import stripe_gateway
from billing.ledger import Line, Posting, ledger_post, org_accounts, system_account
from billing.live import balance_changed_on_commit
from billing.models import AccountKind, BillingProfile, CheckoutSession, TransactionKind
from billing.selectors import profile_of
from gpucloud.core.errors import Conflict, InvalidRequest
from gpucloud.core.money import MICROS_PER_USD, usd_display

CAN_MANAGE_BILLING = CAN_MANAGE_MEMBERS  # admins and owners move money and change billing settings


# Far above any balance, limit or payment, and far below what a micro-dollar column holds (a 64-bit
# integer: about $9.2 trillion), so no amount a client sends can overflow one.
USD_MAX = 1_000_000_000


class AmountBeyondMax(InvalidRequest):
    """An amount over USD_MAX: no balance, limit or payment is that large."""


def usd_to_micros(amount: Decimal | float | int | str, *, param: str) -> int:
    """Exact conversion of a USD amount with at most 6 decimal places, at most USD_MAX either way;
    rejects anything else."""
    try:
        value = Decimal(str(amount))
    except ArithmeticError:
        raise InvalidRequest(f"{amount!r} is not a number of dollars.", param=param) from None
    if not value.is_finite():
        raise InvalidRequest("The amount must be a finite number.", param=param)
    if abs(value) > USD_MAX:
        raise AmountBeyondMax(f"Amounts are at most {usd_display(USD_MAX * MICROS_PER_USD)}.", param=param)
    micros = value * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise InvalidRequest("Amounts are exact to the micro-dollar (at most 6 decimal places).", param=param)
    return int(micros)


def _require_cents(micros: int, *, param: str) -> int:
    if micros % 10_000:
        raise InvalidRequest("Card payments are in whole cents.", param=param)
    return micros // 10_000


def topup_bounds_micros() -> tuple[int, int]:
    return settings.GPUCLOUD_TOPUP_MIN_USD * MICROS_PER_USD, settings.GPUCLOUD_TOPUP_MAX_USD * MICROS_PER_USD


def _check_topup_amount(micros: int, *, param: str) -> None:
    low, high = topup_bounds_micros()
    if not low <= micros <= high:
        raise _topup_refusal(param)


def _topup_refusal(param: str) -> InvalidRequest:
    low, high = topup_bounds_micros()
    return InvalidRequest(f"Top-ups are between {usd_display(low)} and {usd_display(high)}.", param=param)


def topup_to_micros(amount: Decimal | float | int | str, *, param: str) -> int:
    """A card payment's amount as usd_to_micros reads it; one beyond any amount is refused in the
    top-up bounds' words, which say what the person may pay."""
    try:
        return usd_to_micros(amount, param=param)
    except AmountBeyondMax:
        raise _topup_refusal(param) from None


# --- Stripe Checkout -------------------------------------------------------------------------


def checkout_return_urls(billing_page_url: str) -> dict[str, str]:
    """Where Stripe sends the browser back: the billing page, which says what happened."""
    return {
        "success_url": f"{billing_page_url}?checkout=success",
        "cancel_url": f"{billing_page_url}?checkout=cancelled",
    }


def _stripe_customer(org: Organization, user: User | None) -> str:
    """The org's Stripe customer, created once (the stored id makes this idempotent)."""
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().get(pk=profile_of(org).pk)
        if not profile.stripe_customer_id:
            profile.stripe_customer_id = stripe_gateway.customer_create(
                email=user.email if user else "",
                org_id=org.pk,
                org_name=org.name,
                idempotency_key=f"customer:{org.pk}",
            )
            profile.save(update_fields=["stripe_customer_id"])
    return profile.stripe_customer_id


def add_funds_checkout(
    *, principal: Principal, amount_micros: int, success_url: str, cancel_url: str
) -> stripe_gateway.Checkout:
    """Start a Stripe Checkout for a top-up. Credit arrives only with the signed webhook."""
    principal.require(CAN_MANAGE_BILLING, "adding funds")
    _check_topup_amount(amount_micros, param="amount_usd")
    cents = _require_cents(amount_micros, param="amount_usd")
    customer_id = _stripe_customer(principal.org, principal.user)
    checkout = stripe_gateway.checkout_payment_create(
        customer_id=customer_id,
        org_id=principal.org.pk,
        amount_cents=cents,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=f"checkout:{uuid.uuid4()}",
    )
    CheckoutSession.objects.create(
        session_id=checkout.session_id,
        org=principal.org,
        mode="payment",
        amount_micros=amount_micros,
        created_by=principal.user,
    )
    return checkout


def save_card_checkout(*, principal: Principal, success_url: str, cancel_url: str) -> stripe_gateway.Checkout:
    """Start a Checkout in setup mode to save a card for auto-refill."""
    principal.require(CAN_MANAGE_BILLING, "saving a card")
    customer_id = _stripe_customer(principal.org, principal.user)
    checkout = stripe_gateway.checkout_setup_create(
        customer_id=customer_id,
        org_id=principal.org.pk,
        success_url=success_url,
        cancel_url=cancel_url,
        idempotency_key=f"setup:{uuid.uuid4()}",
    )
    CheckoutSession.objects.create(
        session_id=checkout.session_id, org=principal.org, mode="setup", created_by=principal.user
    )
    return checkout


def stripe_credit(
    *, org: Organization, amount_micros: int, key: str, kind: TransactionKind, description: str
) -> Posting:
    """Credit money Stripe collected. `key` names the Stripe object, so every path that learns
    of the same payment (redirect-free webhook, synchronous refill answer) credits it once."""
    available, _ = org_accounts(org)
    posting = ledger_post(
        idempotency_key=key,
        kind=kind,
        org=org,
        description=description,
        lines=[Line(system_account(AccountKind.STRIPE_CLEARING), -amount_micros), Line(available, amount_micros)],
    )
    balance_changed_on_commit(org.pk)  # after the post: outside a transaction it runs at once
    return posting


def stripe_refund(*, org: Organization, amount_micros: int, key: str, charge_id: str) -> Posting:
    """Money Stripe already returned to the card: recorded even if the credit was spent (an
    overdraft, flagged on the transaction)."""
    available, _ = org_accounts(org)
    posting = ledger_post(
        idempotency_key=key,
        kind=TransactionKind.REFUND,
        org=org,
        description="Refund to card (Stripe)",
        allow_overdraft=True,
        metadata={"charge": charge_id, "amount_micros": amount_micros},
        lines=[Line(available, -amount_micros), Line(system_account(AccountKind.STRIPE_CLEARING), amount_micros)],
    )
    balance_changed_on_commit(org.pk)  # after the post: outside a transaction it runs at once
    return posting


# --- Operator credit ---------------------------------------------------------------------


def credit_grant(
    *,
    org: Organization,
    amount_micros: int,
    reason: str,
    created_by: User | None = None,
    idempotency_key: str | None = None,
) -> Posting:
    """An operator's adjustment: promotional credit in (positive) or a correction out (negative)."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("An adjustment needs a reason.", param="reason")
    if amount_micros == 0:
        raise InvalidRequest("The amount must not be zero.", param="amount")
    available, _ = org_accounts(org)
    promotional = system_account(AccountKind.PROMOTIONAL)
    posting = ledger_post(
        idempotency_key=idempotency_key or f"adjustment:{uuid.uuid4()}",
        kind=TransactionKind.ADJUSTMENT,
        org=org,
        description="Credit from the operator" if amount_micros > 0 else "Correction by the operator",
        reason=reason,
        created_by=created_by,
        lines=[Line(promotional, -amount_micros), Line(available, amount_micros)],
    )
    balance_changed_on_commit(org.pk)  # after the post: outside a transaction it runs at once
    return posting


# --- Settings ----------------------------------------------------------------------------


def auto_refill_configure(
    *, principal: Principal, enabled: bool, threshold_micros: int | None, amount_micros: int | None
) -> BillingProfile:
    principal.require(CAN_MANAGE_BILLING, "changing auto-refill")
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().get(pk=profile_of(principal.org).pk)
        if threshold_micros is not None:
            if threshold_micros <= 0:
                raise InvalidRequest("The threshold must be more than $0.", param="threshold_usd")
            profile.auto_refill_threshold_micros = threshold_micros
        if amount_micros is not None:
            _check_topup_amount(amount_micros, param="amount_usd")
            _require_cents(amount_micros, param="amount_usd")
            profile.auto_refill_amount_micros = amount_micros
        if enabled and not profile.stripe_payment_method_id:
            raise Conflict(_no_card_yet())
        profile.auto_refill_enabled = enabled
        if enabled:
            profile.auto_refill_disabled_reason = ""
        profile.save()
    return profile


def _no_card_yet() -> str:
    """Why auto-refill cannot turn on, and the way that exists on this gpucloud."""
    if not stripe_gateway.is_configured():
        return (
            "Auto-refill charges a saved card, and card payments are not set up on this gpucloud: "
            "ask its operator for credit."
        )
    return "Save a card first: top up once by card, or use 'Save a card' on the billing page."


def spend_limit_set(*, principal: Principal, daily_limit_micros: int | None) -> BillingProfile:
    principal.require(CAN_MANAGE_BILLING, "changing the spend limit")
    if daily_limit_micros is not None and daily_limit_micros <= 0:
        raise InvalidRequest(
            "The daily limit must be more than $0; for no limit, leave it empty (null in the API).",
            param="daily_limit_usd",
        )
    profile = profile_of(principal.org)
    profile.daily_spend_limit_micros = daily_limit_micros
    profile.save(update_fields=["daily_spend_limit_micros"])
    return profile
