"""The deployment page beyond its facts: a deployment key made or regenerated there (its secret shown
once and filled into the snippets), the 24-hour chart data, uptime, the cost comparison, the logs
(plain text without JavaScript) and the vendored plotly.js."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.auth import principal_from_api_key
from accounts.models import ApiKey, Membership
from accounts.roles import Role
from deployments import metrics
from deployments.metrics import uptime_ratio
from deployments.models import RequestMinute
from deployments.traffic import bucket_upper_ms
from gpucloud.core.errors import Unauthenticated
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def shown_key(page: str) -> str:
    match = re.search(r'id="new-key">(gpc_dep_\w+)<', page)
    assert match, "the new key's secret is on the page"
    return match.group(1)


def test_a_deployment_key_made_on_the_page_is_shown_once_and_fills_the_snippets(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    client = signed_in(alice)
    made = client.post(f"/deployments/{deployment.pk}/key")
    # Issue 14: post/redirect/get, so a reload shows the page instead of posting again
    assert made.status_code == 302 and made["Location"] == f"/deployments/{deployment.pk}/#key-h"
    page = client.get(made["Location"]).content.decode()
    secret = shown_key(page)
    assert f'api_key="{secret}"' in page and f"Authorization: Bearer {secret}" in page
    principal = principal_from_api_key(secret)
    assert principal.via_deployment_key and principal.org == alice.org
    key = ApiKey.objects.get(deployment=deployment)
    assert secret not in client.get(f"/deployments/{deployment.pk}/").content.decode()  # once only
    assert key.masked in client.get(f"/deployments/{deployment.pk}/").content.decode()

    again = client.post(f"/deployments/{deployment.pk}/key", {"key_id": key.pk}, follow=True).content.decode()
    fresh = shown_key(again)
    assert fresh != secret and ApiKey.objects.filter(deployment=deployment).count() == 1  # same key, new secret
    assert principal_from_api_key(fresh).org == alice.org
    with pytest.raises(Unauthenticated):  # the old secret stopped working
        principal_from_api_key(secret)


def test_keys_of_other_deployments_and_viewers_are_refused_and_nothing_changes(
    alice: Persona, bob: Persona, catalog: None
) -> None:
    first, second = running(alice, "first"), running(alice, "second")
    client = signed_in(alice)
    shown_key(client.post(f"/deployments/{first.pk}/key", follow=True).content.decode())
    key = ApiKey.objects.get(deployment=first)
    before = key.key_hash
    refused = client.post(f"/deployments/{second.pk}/key", {"key_id": key.pk})
    assert refused.status_code == 404 and "No such key on this deployment." in refused.content.decode()
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = signed_in(bob).post(f"/deployments/{first.pk}/key")
    assert viewer.status_code == 403 and "needs member or higher" in viewer.content.decode()
    key.refresh_from_db()
    assert key.key_hash == before and ApiKey.objects.filter(deployment__in=[first, second]).count() == 1


def test_the_charts_uptime_and_cost_comparison_come_from_measured_traffic(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    now = timezone.now()
    two_hours_ago = (now - timedelta(hours=2)).replace(second=0, microsecond=0)
    RequestMinute.objects.create(
        deployment=deployment, minute=two_hours_ago, requests=10, errors=1, prompt_tokens=1000,
        completion_tokens=9000, latency_ms_sum=5000, generation_ms_sum=90_000, latency_hist={"40": 10},
    )  # fmt: skip
    page = signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode()
    chart = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page).group(1))  # type: ignore[union-attr]
    assert len(chart["hours"]) == 25 and sum(chart["requests"]) == 10 and sum(chart["errors"]) == 1
    assert [v for v in chart["latency_avg"] if v is not None] == [500.0]
    # 9000 tokens in 90 s of generation = 100 tokens/s; $3.60/h ÷ 360,000 tokens/h = $10 per 1M.
    assert "Kept busy at 100.0 tokens/s" in page and "≈ $10.00" in page
    # Issue 14: like with like. A SmolLM2 deployment compares with hosted 8B open-weights models, each
    # row with its source and date; no closed model (GPT-4, Claude) and no internal wording.
    assert "No hosted API lists a model as small as SmolLM2 135M" in page
    groq = '<th scope="row">Groq: Llama 3.1 8B Instruct (llama-3.1-8b-instant)<span class="source">list price as of'
    assert groq + ' January 2025, <a href="https://groq.com/pricing/"' in page
    assert '<td class="num" data-label="Per 1M tokens, input / output">$0.05 / $0.08</td>' in page
    assert "GPT-4" not in page and "Claude" not in page and "product brief" not in page
    assert 'src="/static/vendor/plotly.min.js"' in page


def test_uptime_is_the_share_of_the_window_with_a_ready_replica(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    now = timezone.now()
    deployment.started_at = now - timedelta(hours=10)
    deployment.save()
    instance = deployment.instances.get()
    instance.ready_at, instance.terminated_at = now - timedelta(hours=10), now - timedelta(hours=4)
    instance.save()
    deployment.instances.create(
        state="ready", provider="local", provider_instance_id="q", tag="t", api_key="k", endpoint_url="http://x",
        hourly_price_micros=1, launched_at=now - timedelta(hours=3), ready_at=now - timedelta(hours=2),
    )  # fmt: skip
    # ready 10 h→4 h ago and 2 h ago→now: 8 of the 10 hours since it started.
    assert uptime_ratio(deployment, since=now - timedelta(hours=24), until=now) == pytest.approx(0.8)


def test_logs_without_javascript_are_plain_text_and_plotly_is_served(
    alice: Persona, charlie: Persona, catalog: None, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    deployment = running(alice)
    (tmp_path / "instances" / "p").mkdir(parents=True)
    (tmp_path / "instances" / "p" / "engine.log").write_text("loading model\nserver listening\n")
    text = signed_in(alice).get(f"/deployments/{deployment.pk}/logs")
    assert text["Content-Type"].startswith("text/plain")
    assert text.content.decode() == f"== {deployment.instances.get().pk} ==\nloading model\nserver listening\n"
    assert signed_in(charlie).get(f"/deployments/{deployment.pk}/logs").status_code == 404
    settings.DEBUG = True  # the embedded server serves static files from the finders
    bundle = Client().get("/static/vendor/plotly.min.js")
    assert bundle.status_code == 200 and b"plotly" in b"".join(bundle.streaming_content)[:2000].lower()  # type: ignore[attr-defined]


@pytest.mark.parametrize("vendor_sums", [True, False], ids=["database-sums", "python-sums"])
def test_hourly_metrics_merge_minutes_and_histograms(
    alice: Persona, catalog: None, vendor_sums: bool, monkeypatch: pytest.MonkeyPatch
) -> None:

    if not vendor_sums:
        monkeypatch.setattr(connection, "vendor", "sqlite")  # the portable path, on this database
    deployment = running(alice)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for minute, requests, hist in ((hour, 4, {"10": 3, "20": 1}), (hour + timedelta(minutes=59), 6, {"20": 6}),
                                   (hour + timedelta(hours=1), 2, {"30": 2})):  # fmt: skip
        RequestMinute.objects.create(deployment=deployment, minute=minute, requests=requests,
                                     latency_ms_sum=100 * requests, latency_hist=hist, ttft_hist={"5": 1})  # fmt: skip
    hours = metrics.hours_between(deployment, hour - timedelta(minutes=5), timezone.now())
    first, second = int(hour.timestamp()), int((hour + timedelta(hours=1)).timestamp())
    assert hours[first]["requests"] == 10 and hours[first]["lat:10"] == 3 and hours[first]["lat:20"] == 7
    assert hours[second]["lat:30"] == 2 and hours[first]["ttft:5"] == 2 and set(hours) == {first, second}
    series = metrics.deployment_series(deployment, since=hour - timedelta(minutes=5), until=timezone.now(),
                                       hours=hours)  # fmt: skip
    busy = [p for p in series if p.requests]
    assert [(p.start.timestamp(), p.requests, p.latency_ms_p95) for p in busy] == [
        (first, 10, round(bucket_upper_ms(20), 2)), (second, 2, round(bucket_upper_ms(30), 2))
    ]  # fmt: skip
    window = metrics.deployment_window(deployment, since=hour - timedelta(minutes=5), hours=hours)
    assert (window.requests, window.latency_ms_avg) == (12, 100.0)
    assert window.latency_ms_p50 == round(bucket_upper_ms(20), 2)
