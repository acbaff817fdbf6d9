"""A deployment's page says what happened: who stopped it and when, what bills now ($0 with no
replica launched), a runtime that stops when nothing runs, a first-minute hold shown as a hold,
and no forms for what a stopped deployment can no longer do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing.holds import hold_open
from billing.models import Service
from deployments.lifecycle import deployment_refresh_status
from deployments.models import Deployment, DeploymentStatus
from deployments.selectors import deployment_row
from fleet import tasks
from fleet.models import Instance, InstanceState
from fleet.provisioning import first_minute_hold_key
from tests.support.billing import fund
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def main_of(page: str) -> str:
    return page.split('<main id="main"')[1]


def test_a_stopped_deployment_says_who_stopped_it_and_when(
    alice: Persona, catalog: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(tasks.instance_terminate_task, "delay", lambda instance_id: None)
    deployment = running(alice)
    client = signed_in(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/deployments/{deployment.pk}/stop")
    asked_at = timezone.now()
    instance = deployment.instances.get()
    Instance.objects.filter(pk=instance.pk).update(state=InstanceState.TERMINATED, terminated_at=asked_at)
    deployment.refresh_from_db()
    deployment_refresh_status(deployment)
    deployment.refresh_from_db()
    page = main_of(client.get(f"/deployments/{deployment.pk}/").content.decode())
    said = f"Stopped by alice@example.com at {asked_at:%H:%M} UTC."
    assert deployment.status == DeploymentStatus.STOPPED and deployment.status_reason == said
    assert f'id="status-reason">{said}<' in page and "Deleted by the user" not in page


def test_a_stopped_page_offers_no_forms_that_no_longer_apply(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.STOPPED, stopped_at=timezone.now())
    Instance.objects.filter(deployment=deployment).update(state=InstanceState.TERMINATED, terminated_at=timezone.now())
    page = main_of(signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode())
    for action in ('/key"', "/scaling", "/sla", "/preset", '/webhooks"', '/access"', "/stop"):
        assert f'action="/deployments/{deployment.pk}{action}' not in page, action
    assert "Create a deployment key" not in page and "Stop…" not in page


def test_cost_per_hour_now_is_zero_while_no_replica_has_launched_and_the_hold_shows_as_a_hold(
    alice: Persona, catalog: None
) -> None:
    fund(alice.org, 5_000_000)
    deployment = Deployment.objects.create(
        org=alice.org, name="chat", status="provisioning", model_id="smollm2-135m-instruct", gpu_type_id="cpu",
        region_id="local", desired_replicas=1, hourly_price_micros=3_600_000,
    )  # fmt: skip
    instance = Instance.objects.create(
        deployment=deployment, state=InstanceState.WAITING_FOR_CAPACITY, tag="t", api_key="k",
        hourly_price_micros=3_600_000,
    )  # fmt: skip
    hold_open(org=alice.org, amount_micros=60_000, idempotency_key=first_minute_hold_key(instance.pk),
              description="First minute of chat", service=Service.MODEL)  # fmt: skip
    row = deployment_row(deployment)
    assert (row.hourly_cost_micros, row.accrued_micros, row.ticker["rate_micros"]) == (0, 0, 0)
    page = main_of(signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode())
    assert "<dt>Cost/hr now</dt><dd>$0.00 ($3.60 per replica)</dd>" in page
    assert '<dd id="held">$0.06 <span class="muted">for the first minute of replicas not started yet' in page
    listing = signed_in(alice).get("/deployments/").content.decode()
    assert 'data-label="Cost/hr now">$0.00<' in listing


def test_runtime_counts_only_time_with_a_replica_running(alice: Persona, catalog: None, client: Any) -> None:
    deployment = running(alice)
    now = timezone.now()
    # Ran 10 minutes two hours ago, then scaled to zero: the runtime is 10 minutes and stands still.
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.SCALED_TO_ZERO, desired_replicas=0, started_at=now - timedelta(hours=2)
    )
    Instance.objects.filter(deployment=deployment).update(
        state=InstanceState.TERMINATED, launched_at=now - timedelta(hours=2),
        terminated_at=now - timedelta(hours=2) + timedelta(minutes=10),
    )  # fmt: skip
    deployment.refresh_from_db()
    assert deployment_row(deployment, now=now).runtime_seconds == 600
    page = main_of(signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode())
    assert '<dt>Runtime</dt><dd>10 min 00 s <span class="muted">(nothing running now)</span></dd>' in page
    assert 'class="runtime"' not in page  # nothing ticks
    assert "<dt>Cost/hr now</dt><dd>$0.00" in page
    api = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert (api["runtime_seconds"], api["hourly_cost_usd"]) == (600, 0)  # the API says the same


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_the_running_cost_ticks_from_each_replicas_end_of_its_billed_minute(alice: Persona, catalog: None) -> None:
    """A replica's first charge bills its 60-second minimum, which the accrued cost already counts:
    the page must not add its rate on top during that minute (it showed $0.069501 at 16 s for a
    $0.062291 bill), so the ticker says from when each replica's cost rises."""
    deployment = running(alice, replicas=2)
    now = timezone.now()
    young, old = deployment.instances.order_by("pk")
    Instance.objects.filter(pk=young.pk).update(launched_at=now - timedelta(seconds=16))
    Instance.objects.filter(pk=old.pk).update(launched_at=now - timedelta(minutes=5))
    deployment.refresh_from_db()
    ticker = deployment_row(deployment, now=now).ticker
    # The young one's minimum and the old one's five minutes at $3.60/h; the young one rises once its
    # minute is used up (in 44 s), the old one already rises.
    assert (ticker["cost_micros"], ticker["rate_micros"], ticker["as_of_ms"]) == (360_000, 7_200_000, ms(now))
    rising_from = [ms(now - timedelta(minutes=4)), ms(now + timedelta(seconds=44))]
    assert sorted(ticker["sessions"]) == [[3_600_000, rising_from[0]], [3_600_000, rising_from[1]]]
    page = main_of(signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode())
    assert 'data-sessions="[[3600000,' in page


@pytest.mark.parametrize(
    ("path", "typed"),
    [
        ("scaling", {"min_replicas": "3", "max_replicas": "1"}),
        ("scaling", {"min_replicas": "0"}),
        ("scaling", {"max_replicas": "99"}),
        ("scaling", {"idle_timeout_seconds": "5"}),
        ("scaling", {"target": "0"}),
        ("sla", {"ttft_target_ms": "0"}),
        ("sla", {"throughput_target_tps": "0"}),
        ("sla", {"concurrency_limit": "0"}),
    ],
)
def test_form_refusals_name_what_the_form_says_not_api_fields(
    alice: Persona, catalog: None, path: str, typed: dict[str, str]
) -> None:
    deployment = running(alice)
    scaling = {"min_replicas": "1", "max_replicas": "1", "idle_timeout_seconds": "900", "metric": "concurrency",
               "target": "4"}  # fmt: skip
    form = {**(scaling if path == "scaling" else {}), **typed}
    refused = signed_in(alice).post(f"/deployments/{deployment.pk}/{path}", form)
    error = refused.content.decode().split(f'id="{path}-error" role="alert">')[1].split("</p>")[0]
    assert refused.status_code == 400
    api_words = ("min_replicas", "max_replicas", "idle_timeout_seconds", "scale_to_zero", "target.value",
                 "target.metric", "null", "ttft_target_ms", "throughput_target_tps", "concurrency_limit")  # fmt: skip
    assert not any(word in error for word in api_words), error
    if typed == {"min_replicas": "3", "max_replicas": "1"}:
        assert error == "The minimum can&#x27;t be above the maximum (3 &gt; 1)."


def test_on_a_phone_every_table_with_money_or_actions_stacks_into_labelled_cards(
    alice: Persona, catalog: None, client: Any
) -> None:
    """At 390 px a scrolling table hid the amounts ("-$0") and Revoke; `table.stack` turns each row
    into a card of label/value lines (static/css/app.css), so every cell needs its label. Checked
    in Chromium at 390 px by hand (nothing outside the viewport); here, the markup that makes it so."""
    fund(alice.org, 5_000_000)
    deployment = running(alice)
    client.post("/api/v1/api-keys", data={"name": "customer-a", "kind": "account", "scoped": True},
                content_type="application/json", **alice.auth)  # fmt: skip
    browser = signed_in(alice)
    for path in ("/billing/", "/api-keys/", f"/deployments/{deployment.pk}/", "/deployments/"):
        page = main_of(browser.get(path).content.decode())
        tables = page.split("<table")[1:]
        assert tables, path
        for table in tables:
            body = table.split("<tbody")[1].split("</tbody>")[0] if "<tbody" in table else ""
            classes = table.split('class="', 1)[1].split('"', 1)[0].split() if table.startswith(" class=") else []
            assert "stack" in classes, (path, table[:120])
            cells = body.count("<td")
            labelled = body.count("<td data-label=") + body.count('" data-label=') + body.count('<td class="actions"')
            labelled += body.count("colspan=")  # "No transactions yet", "Load more": one cell rows
            assert labelled >= cells, (path, body[:400])
