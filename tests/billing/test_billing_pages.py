"""The billing figures as pages show them agree with each other and with the ledger, and without
card payments configured no page offers a control that cannot work (with Stripe, everything works
as before: tests/billing/test_stripe.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.holds import hold_open
from billing.metering import usage_charge, usage_meter_start, usage_prepay_from_hold
from billing.models import Service
from billing.selectors import usage_month_to_date
from tests.fakes.stripe_server import FakeStripe
from tests.support.billing import fund
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


def main_of(page: str) -> str:
    return page.split('<main id="main"')[1]


def test_without_stripe_no_page_offers_add_funds_or_auto_refill_and_billing_says_why_once(alice: Persona) -> None:
    fund(alice.org, 5 * USD)
    client = signed_in(alice)
    for path in ("/dashboard/", "/deployments/", "/api-keys/", "/billing/"):
        page = client.get(path).content.decode()
        assert "#add-funds" not in page and ">Add funds<" not in page, path
    billing = main_of(client.get("/billing/").content.decode())
    assert billing.count("Card payments are not set up on this gpucloud") == 1
    assert "ask its operator for credit" in billing
    assert "Auto-refill" not in billing and "Save a card" not in billing and 'badge off">Off' not in billing
    assert 'action="/billing/add-funds"' not in billing and 'action="/billing/auto-refill"' not in billing
    assert 'id="spend-limit"' in billing  # the spend limit works without cards


def test_without_stripe_the_api_refuses_auto_refill_with_what_to_do(alice: Persona, client: Client) -> None:
    response = client.patch(
        "/api/v1/billing/auto-refill", data={"enabled": True, "threshold_usd": 5, "amount_usd": 25},
        content_type="application/json", **alice.auth,
    )  # fmt: skip
    message = response.json()["error"]["message"]
    assert response.status_code == 409
    assert "card payments are not set up on this gpucloud: ask its operator for credit" in message
    assert "Save a card" not in message


def test_with_stripe_the_header_and_billing_page_offer_funds_and_auto_refill(
    alice: Persona, stripe_fake: FakeStripe
) -> None:
    client = signed_in(alice)
    assert 'href="/billing/#add-funds">Add funds</a>' in client.get("/dashboard/").content.decode()
    billing = main_of(client.get("/billing/").content.decode())
    assert 'action="/billing/add-funds"' in billing and 'action="/billing/auto-refill"' in billing
    assert "Save a card" in billing and "Card payments are not set up" not in billing


def test_each_statement_row_shows_the_balance_that_row_left_to_the_micro_dollar(alice: Persona) -> None:
    fund(alice.org, 5 * USD)
    start = timezone.now() - timedelta(minutes=3)
    meter = usage_meter_start(
        org=alice.org, meter_key="i-1", service=Service.MODEL, description="chat", hourly_price_micros=50_000,
        started_at=start,
    )  # fmt: skip
    usage_charge(meter, start, start + timedelta(seconds=60))  # $0.000833
    usage_charge(meter, start, start + timedelta(seconds=120))  # $0.000833 more (cumulative: 1666)
    rows = main_of(signed_in(alice).get("/billing/").content.decode()).split('<tbody id="statement">')[1]
    balances = [cell.split("</td>")[0] for cell in rows.split('data-label="Balance after">')[1:]]
    assert balances == ["$4.998334", "$4.999167", "$5.00"]  # newest first, each row's own balance


def test_average_cost_per_gpu_hour_is_the_price_when_the_first_minute_was_held(alice: Persona, client: Client) -> None:
    fund(alice.org, 5 * USD)
    start = timezone.now() - timedelta(hours=2)
    hold = hold_open(org=alice.org, amount_micros=833, idempotency_key="first-minute:i-1", description="first minute",
                     service=Service.MODEL)  # fmt: skip
    meter = usage_meter_start(
        org=alice.org, meter_key="i-1", service=Service.MODEL, description="chat", hourly_price_micros=50_000,
        started_at=start,
    )  # fmt: skip
    usage_prepay_from_hold(meter, hold.pk)
    usage_charge(meter, start, start + timedelta(hours=1))
    report = usage_month_to_date(alice.org)
    assert (report.total_micros, report.gpu_seconds) == (50_000, 3600)
    assert report.average_hourly_micros == 50_000
    usage = client.get("/api/v1/billing/usage", **alice.auth).json()
    assert usage["average_cost_per_gpu_hour_usd"] == 0.05 and usage["gpu_hours"] == 1
    page = main_of(signed_in(alice).get("/billing/").content.decode())
    assert 'Avg cost / GPU-hour</span><span class="stat-value">$0.05<' in page


def test_month_and_balance_use_one_precision_rule(alice: Persona, settings: Any) -> None:
    fund(alice.org, 4_998_501)
    client = signed_in(alice)
    for path in ("/dashboard/", "/billing/"):
        page = client.get(path).content.decode()
        assert "$4.998501" in page and "$5.00" not in page, path
