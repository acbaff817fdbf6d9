"""A web process SIGKILLed during a cold wake (issue 15, "also prove"). A request to a cold serverless
deployment holds its replica's first minute and starts the wake; the web process dies while it holds
the request for the replica, and whatever it had queued for a worker is lost with it. The periodic
tasks alone must resolve every hold: the reconciler's round launches the replica (its hold posted as
the first minute), and a replica that waits for capacity has its hold expire (released); then
`manage.py ledger_check` finds the ledger true."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.principal import Principal
from accounts.roles import Role
from billing.holds import holds_expire_due
from billing.models import CreditHold, HoldStatus
from deployments.models import Deployment
from deployments.services import Serverless, deployment_create
from fleet.models import Instance, InstanceState
from fleet.provisioning import first_minute_hold_key
from fleet.reconciler import fleet_reconcile
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.embedded import wait_for
from tests.support.personas import Persona
from tests.support.processes import gateway_process

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the web process sees committed rows only
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not django_settings.REDIS_URL,
        reason="the distributed topology: PostgreSQL shared by processes, Redis as the broker",
    ),
    pytest.mark.slow,
]
KILLS = 3
CAPACITY = KILLS - 1  # the last wake's replica waits for capacity: its hold is left to expire
USD = 1_000_000
H100 = 3_600_000  # $3.60/h: the first minute is $0.06


def held_request(base: str, key: str, deployment_id: str) -> tuple[threading.Thread, list[str]]:
    """A chat request held for the replica (X-Wait-For-Ready), sent by the thread returned; what
    came of it lands in the list returned once that thread ends."""
    outcome: list[str] = []

    def send() -> None:
        try:
            response = httpx.post(
                f"{base}/v1/chat/completions", timeout=90,
                json={"model": deployment_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                headers={"Authorization": f"Bearer {key}", "X-Wait-For-Ready": "60"},
            )  # fmt: skip
            outcome.append(f"answered {response.status_code}")
        except httpx.HTTPError as exc:
            outcome.append(f"cut: {type(exc).__name__}")

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, outcome


def test_a_web_process_killed_during_cold_wakes_leaves_every_hold_resolved_and_the_ledger_true(
    settings: Any, alice: Persona, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with sim_cloud.sole_provider(settings, {"h100": {"price": H100, "capacity": CAPACITY}}) as tag:
        fund(alice.org, 10 * USD)
        owner = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
        cold = [
            deployment_create(principal=owner, name=f"cold-{n}", model_id="llama-3.1-8b-instruct", gpu_type="h100",
                              region="atl1", serverless=Serverless(idle_timeout_seconds=900, start_cold=True))
            for n in range(KILLS)
        ]  # fmt: skip
        for n, deployment in enumerate(cold):
            run_dir = tmp_path / f"web-{n}"
            run_dir.mkdir()
            with gateway_process(run_dir, name="web", GPUCLOUD_FLEET_TAG=tag) as web:
                sender, outcome = held_request(web.url, alice.key, deployment.pk)
                wait_for(Instance.objects.filter(deployment=deployment).exists, 30, "the wake")
                time.sleep(0.25 * n)  # the request is held meanwhile, polling for a ready replica
                web.kill()
                sender.join(30)
            assert outcome and outcome[0].startswith("cut"), outcome  # killed while it held the request
            instance = Instance.objects.get(deployment=deployment)
            hold = CreditHold.objects.get(idempotency_key=first_minute_hold_key(instance.pk))
            assert (instance.state, hold.status, hold.amount_micros) == (InstanceState.PROVISIONING, "open", 60_000)
        # What the killed processes queued for a worker is lost too: the periodic tasks alone go on.
        redis.Redis.from_url(django_settings.REDIS_URL).delete("celery")

        with django_capture_on_commit_callbacks(execute=True):
            fleet_reconcile(now=timezone.now() + timedelta(seconds=30))  # beat's round, 30 s on
        holds = CreditHold.objects.filter(org=alice.org)
        assert sorted(holds.values_list("status", flat=True)) == ["open"] + ["posted"] * CAPACITY
        assert len(sim_cloud.running(tag)) == CAPACITY
        waiting = Instance.objects.get(state=InstanceState.WAITING_FOR_CAPACITY)
        assert Deployment.objects.filter(instances__state=InstanceState.READY).count() == CAPACITY

        assert holds_expire_due(now=timezone.now() + timedelta(minutes=31)) == 1  # beat's expiry, past the TTL
        assert holds.get(idempotency_key=first_minute_hold_key(waiting.pk)).status == HoldStatus.EXPIRED
        assert not holds.filter(status=HoldStatus.OPEN).exists()
        out = StringIO()
        call_command("ledger_check", stdout=out)
        assert out.getvalue().startswith("Ledger OK")
