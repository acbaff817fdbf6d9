"""The billing page. Thin: parse the form, call a service, render or redirect."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import principal_from_session
from accounts.roles import role_at_least
from billing import selectors, services, stripe_gateway
from billing.policy import grace_period
from billing.services import CAN_MANAGE_BILLING
from gpucloud.core.errors import ApiError
from pages.form_urls import get_goes_to

PAGE = 25
TOPUP_CHOICES_USD = (25, 50, 100)


def _statement(request: HttpRequest, before: int | None) -> dict[str, object]:
    org = principal_from_session(request).org
    entries = list(selectors.statement_of(org, before_id=before)[: PAGE + 1])
    return {"entries": entries[:PAGE], "next_before": entries[PAGE - 1].pk if len(entries) > PAGE else None}


@login_required
@require_GET
def billing(request: HttpRequest) -> HttpResponse:
    checkout = request.GET.get("checkout")
    if checkout == "success":
        messages.info(request, "Payment received by Stripe: your balance updates as soon as Stripe confirms it.")
    elif checkout == "cancelled":
        messages.info(request, "Checkout cancelled; nothing was charged.")
    return _billing_page(request)


def _billing_page(
    request: HttpRequest, status: int = 200, *, errors: dict[str, str] | None = None, posted: object = None
) -> HttpResponse:
    """The page; after a refused form, with the refusal next to that form and what was typed."""
    principal = principal_from_session(request)
    org = principal.org
    profile = selectors.profile_of(org)
    report = selectors.usage_month_to_date(org)
    context = {
        "balance": selectors.balance_of(org),
        "profile": profile,
        "grace_ends_at": profile.grace_started_at + grace_period() if profile.grace_started_at else None,
        "report": report,
        "by_service": [
            (name, micros, 100 * micros // report.total_micros if report.total_micros else 0)
            for name, micros in report.by_service.items()
        ],
        "spent_today": selectors.spend_today(org),
        "topup_choices": TOPUP_CHOICES_USD,
        "topup_bounds": services.topup_bounds_micros(),
        "payments_configured": stripe_gateway.is_configured(),
        "can_manage": role_at_least(principal.role, CAN_MANAGE_BILLING),
        **_statement(request, None),
        "errors": errors or {},
        "posted": posted or {},
    }
    return render(request, "billing/billing.html", context, status=status)


@login_required
@require_GET
def billing_transactions(request: HttpRequest) -> HttpResponse:
    """The next page of the statement, as table rows for "Load more"."""
    before = request.GET.get("before")
    context = _statement(request, int(before) if before and before.isdigit() else None)
    return render(request, "billing/billing.html#statement_rows", context)


def _attempt(
    request: HttpRequest, action: Callable[[], HttpResponse | None], form: str, success: str = ""
) -> HttpResponse:
    """Run a form's action; a refusal comes back inline, next to `form`, with what was typed."""
    try:
        response = action()
    except ApiError as exc:
        return _billing_page(request, exc.status, errors={form: exc.message}, posted=request.POST)
    if response is not None:
        return response
    if success:
        messages.success(request, success)
    return redirect("billing")


def _return_urls(request: HttpRequest) -> dict[str, str]:
    return services.checkout_return_urls(request.build_absolute_uri("/billing/"))


@login_required
@get_goes_to("billing")
@require_POST
def billing_add_funds(request: HttpRequest) -> HttpResponse:
    def start() -> HttpResponse:
        amount = services.topup_to_micros(request.POST.get("amount_usd", ""), param="amount_usd")
        principal = principal_from_session(request)
        checkout = services.add_funds_checkout(principal=principal, amount_micros=amount, **_return_urls(request))
        return redirect(checkout.url)

    return _attempt(request, start, "topup")


@login_required
@get_goes_to("billing")
@require_POST
def billing_save_card(request: HttpRequest) -> HttpResponse:
    def start() -> HttpResponse:
        principal = principal_from_session(request)
        return redirect(services.save_card_checkout(principal=principal, **_return_urls(request)).url)

    return _attempt(request, start, "card")


@login_required
@get_goes_to("billing")
@require_POST
def billing_auto_refill(request: HttpRequest) -> HttpResponse:
    def save() -> None:
        services.auto_refill_configure(
            principal=principal_from_session(request),
            enabled=request.POST.get("enabled") == "on",
            threshold_micros=services.usd_to_micros(request.POST.get("threshold_usd", ""), param="threshold_usd"),
            amount_micros=services.topup_to_micros(request.POST.get("amount_usd", ""), param="amount_usd"),
        )

    return _attempt(request, save, "refill", "Auto-refill settings saved.")


@login_required
@get_goes_to("billing")
@require_POST
def billing_spend_limit(request: HttpRequest) -> HttpResponse:
    def save() -> None:
        raw = request.POST.get("daily_limit_usd", "").strip()
        limit = services.usd_to_micros(raw, param="daily_limit_usd") if raw else None
        services.spend_limit_set(principal=principal_from_session(request), daily_limit_micros=limit)

    return _attempt(request, save, "limit", "Daily spend limit saved.")
