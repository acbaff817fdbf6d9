"""The dashboard: the org's spendable balance ticking from what its sessions have run up, what
runs now, GPU hours and spend this month, quick deploy and recent activity, in a fixed number of
queries; other orgs' figures never show."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing.metering import usage_charge
from billing.models import Service, UsageMeter
from billing.selectors import balance_ticker
from billing.services import credit_grant
from deployments.lifecycle import deployment_transition
from deployments.models import DeploymentStatus
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def test_the_balance_counts_what_open_sessions_ran_up_since_their_last_charge(alice: Persona) -> None:
    credit_grant(org=alice.org, amount_micros=10_000_000, reason="welcome")
    now = timezone.now()
    UsageMeter.objects.create(
        org=alice.org, meter_key="i-1", service=Service.MODEL, description="x", hourly_price_micros=3_600_000,
        started_at=now - timedelta(minutes=10), billed_seconds=60, billed_micros=60_000,
    )  # fmt: skip
    UsageMeter.objects.create(
        org=alice.org, meter_key="i-2", service=Service.POD, description="ended", hourly_price_micros=7_200_000,
        started_at=now - timedelta(hours=2), ended_at=now - timedelta(hours=1), billed_seconds=3600,
        billed_micros=7_200_000,
    )  # fmt: skip
    ticker = balance_ticker(alice.org, now=now)
    # ten minutes at $3.60/h is $0.60, of which $0.06 is billed: $0.54 not yet on the ledger.
    assert ticker.available_micros == 10_000_000 - 540_000
    assert ticker.rate_micros == 3_600_000  # the ended session no longer runs
    assert ticker.as_of_ms == int(now.timestamp() * 1000)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_the_balance_falls_by_a_session_only_once_its_billed_minimum_is_used_up(alice: Persona) -> None:
    """A machine's session bills its first minute when it starts; the header fell by its full rate
    from then on too (4,977 µ$ in 6 s). The ticker says from when each session takes more: a
    machine's once its minute is used up, a volume's (no minimum) at once."""
    credit_grant(org=alice.org, amount_micros=10_000_000, reason="welcome")
    now = timezone.now()
    UsageMeter.objects.create(
        org=alice.org, meter_key="i-1", service=Service.MODEL, description="x", hourly_price_micros=3_600_000,
        started_at=now - timedelta(seconds=16), billed_seconds=60, billed_micros=60_000,
    )  # fmt: skip
    UsageMeter.objects.create(
        org=alice.org, meter_key="v-1:0", service=Service.STORAGE, description="volume", hourly_price_micros=36_000,
        started_at=now - timedelta(minutes=10), billed_seconds=0, billed_micros=0,
    )  # fmt: skip
    ticker = balance_ticker(alice.org, now=now)
    assert ticker.available_micros == 10_000_000 - 6_000  # the machine's minute is billed, the volume's 10 minutes not
    assert ticker.sessions == [[3_600_000, ms(now + timedelta(seconds=44))], [36_000, ms(now - timedelta(minutes=10))]]
    header = signed_in(alice).get("/billing/").content.decode()
    assert f'data-sessions="{json.dumps(ticker.sessions, separators=(",", ":"))}"' in header


def test_the_dashboard_shows_this_orgs_money_deployments_and_activity(
    alice: Persona, charlie: Persona, catalog: None
) -> None:
    credit_grant(org=alice.org, amount_micros=25_000_000, reason="welcome")
    live = running(alice, "chat-prod", replicas=2)
    stopped = running(alice, "old-run")
    deployment_transition(stopped, DeploymentStatus.FAILED, "The engine exited: out of memory.")
    running(charlie, "charlies-secret")
    meter = UsageMeter.objects.get(meter_key=live.instances.first().pk)  # type: ignore[union-attr]
    meter.billed_seconds = meter.billed_micros = 0
    meter.started_at = timezone.now() - timedelta(hours=1)
    meter.save()
    usage_charge(meter, meter.started_at, timezone.now())  # one GPU-hour at $3.60, this month

    page = signed_in(alice).get("/dashboard/").content.decode()
    assert "chat-prod" in page and "charlies-secret" not in page
    assert "old-run failed: The engine exited: out of memory." in page  # the failure, in the activity feed
    assert page.count('id="status-') == 1  # the failed deployment is not in the active table
    assert "Credit from the operator" in page  # the top-up
    assert ">$3.60<" in page  # spend month to date
    assert ">1.0<" in page  # GPU hours month to date
    assert "$7.20" in page  # the active deployment's cost/hr
    assert 'class="balance"' in page and "Add funds" not in page  # no card payments in tests: nothing to add funds with
    assert "SmolLM2" in page  # quick deploy from the catalog


def test_the_dashboard_reads_a_fixed_number_of_queries(
    alice: Persona, catalog: None, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(alice)
    running(alice, "first")
    client.get("/dashboard/")
    for n in range(15):
        deployment = running(alice, f"d{n}", replicas=2)
        credit_grant(org=alice.org, amount_micros=1_000_000, reason=f"grant {n}")
        if n % 3 == 0:
            deployment_transition(deployment, DeploymentStatus.DEGRADED, "One replica is down.")
    # 16 before issue 14, + 3 for Quick deploy's availability (GPU types, regions, stored offers)
    with django_assert_max_num_queries(19):
        page = client.get("/dashboard/")
    assert page.status_code == 200 and page.content.decode().count('id="status-') == 16
