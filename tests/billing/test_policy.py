from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import ActivityEvent
from billing.ledger import InsufficientCredit
from billing.metering import usage_charge, usage_meter_start
from billing.models import BillingProfile, Service, UsageMeter
from billing.policy import SpendLimitReached, launch_check, zero_balance_check
from billing.selectors import balance_of
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, Pod
from tests.support.billing import fund, ledger_snapshot
from tests.support.personas import Persona

USD = 1_000_000


def test_launch_needs_credit(alice: Persona) -> None:
    with pytest.raises(InsufficientCredit, match="ask the operator of this gpucloud for credit"):
        launch_check(alice.org)
    fund(alice.org, 1 * USD)
    launch_check(alice.org)


def test_daily_spend_limit_refuses_new_launches(alice: Persona) -> None:
    fund(alice.org, 100 * USD)
    BillingProfile.objects.update_or_create(org=alice.org, defaults={"daily_spend_limit_micros": 2 * USD})
    now = timezone.now()
    meter = usage_meter_start(
        org=alice.org, meter_key="m", service=Service.POD, description="pod", hourly_price_micros=2 * USD,
        started_at=now - timedelta(hours=2),
    )  # fmt: skip
    launch_check(alice.org, now=now)
    usage_charge(meter, meter.started_at, now)
    before = ledger_snapshot()
    with pytest.raises(SpendLimitReached, match=r"Daily spend limit of \$2.00 reached \(\$4.00 spent today"):
        launch_check(alice.org, now=now)
    assert ledger_snapshot() == before


def test_zero_balance_grace_then_stop(alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.GPUCLOUD_ZERO_BALANCE_GRACE_SECONDS = 300
    pod = Deployment.objects.create(org=alice.org, name="pod", kind=DeploymentKind.POD, status=DeploymentStatus.ACTIVE)
    Pod.objects.create(deployment=pod, image="gpucloud/shell")  # every pod has its row (deployments.models.Pod)
    model = Deployment.objects.create(org=alice.org, name="llm", status=DeploymentStatus.ACTIVE)
    start = timezone.now()
    meter = usage_meter_start(
        org=alice.org, meter_key="pod-1", service=Service.POD, description="pod", hourly_price_micros=USD,
        started_at=start,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        assert zero_balance_check(alice.org, now=start) == "grace_started"
    assert any("balance at $0.00" in m.subject and "alice@example.com" in m.to for m in mail.outbox)
    assert ActivityEvent.objects.filter(org=alice.org, kind="billing.grace_started").count() == 1
    assert zero_balance_check(alice.org, now=start + timedelta(seconds=299)) == "in_grace"
    assert len(mail.outbox) == 1  # one email per grace period, not per check

    assert zero_balance_check(alice.org, now=start + timedelta(seconds=301)) == "stopped"
    pod.refresh_from_db()
    model.refresh_from_db()
    assert pod.status == DeploymentStatus.STOPPED  # pods keep storage: stopped, can start again
    assert model.status == DeploymentStatus.STOPPED  # it had no instances left to wait for
    meter.refresh_from_db()
    assert meter.ended_at is not None
    assert balance_of(alice.org).available_micros == -(USD * 301 // 3600)  # billed to the stop, flagged overdraft


def test_adding_funds_ends_grace(alice: Persona) -> None:
    zero_balance_check(alice.org)
    fund(alice.org, 5 * USD)
    assert zero_balance_check(alice.org) == "grace_ended"
    assert BillingProfile.objects.get(org=alice.org).grace_started_at is None
    assert UsageMeter.objects.count() == 0
