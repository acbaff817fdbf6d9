"""The deployment page's Scaling and SLA section: the settings in words, the SLA targets against the
last five minutes with the latest breaches, the preset and its rollout; forms change each one and
answer with the section; a refusal (the form's or the service's) is shown inline with what was typed
and changes nothing; viewers get the 403 inline, other orgs a 404."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.template.defaultfilters import floatformat
from django.utils import timezone
from django.utils.html import escape

from accounts.models import Membership
from accounts.roles import Role
from deployments.models import Deployment, DeploymentKind, RequestMinute, RolloutState, SlaBreach
from deployments.traffic import bucket, bucket_upper_ms
from fleet.models import Instance
from pages.deployments.scaling_section import scaling_summary
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000
SCALING = {"min_replicas": "1", "max_replicas": "1", "idle_timeout_seconds": "900", "metric": "concurrency",
           "target": "4"}  # fmt: skip


def settings_of(deployment: Deployment) -> tuple[Any, ...]:
    """Everything the section's forms can change."""
    deployment.refresh_from_db()
    return (
        deployment.min_replicas, deployment.max_replicas, deployment.scale_to_zero, deployment.idle_timeout_seconds,
        deployment.scaling_metric, deployment.scaling_target, deployment.ttft_target_ms,
        deployment.throughput_target_tps, deployment.concurrency_limit, deployment.preset_id, deployment.gpu_type_id,
        deployment.rollout_state, deployment.instances.count(), deployment.cold_start_wait_seconds,
    )  # fmt: skip


def section(page: str) -> str:
    """The Scaling and SLA section of a deployment page."""
    start = page.index('<section class="card" aria-labelledby="scaling-h">')
    return page[start : page.index("</section>", start)]


def test_the_section_shows_the_settings_the_sla_against_the_last_minutes_and_the_preset(
    alice: Persona, catalog: None
) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(
        kind=DeploymentKind.SERVERLESS, min_replicas=0, max_replicas=3, scale_to_zero=True, ttft_target_ms=500,
        concurrency_limit=8, preset_id="balanced", rollout_state=RolloutState.FAILED,
        rollout_message="Rolling to preset Balanced stopped: no capacity.",
    )  # fmt: skip
    now = timezone.now()
    RequestMinute.objects.create(
        deployment=deployment, minute=(now - timedelta(minutes=2)).replace(second=0, microsecond=0), requests=10,
        completion_tokens=900, generation_ms_sum=9000, latency_ms_sum=9000, ttft_count=10,
        ttft_ms_sum=8000, ttft_hist={str(bucket(800)): 10},
    )  # fmt: skip
    SlaBreach.objects.create(deployment=deployment, metric="ttft_ms", target=500, measured=812,
                             at=now - timedelta(minutes=10))  # fmt: skip
    SlaBreach.objects.create(deployment=deployment, metric="throughput_tps", target=50, measured=31.04,
                             at=now - timedelta(days=2), recovered_at=now - timedelta(days=2, minutes=-3))  # fmt: skip
    page = signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode()
    assert page.index('id="compare-h"') < page.index('id="scaling-h"') < page.index('id="logs-h"')
    assert '<a href="#compare-h">Cost comparison</a> <a href="#scaling-h">Scaling &amp; SLA</a>' in page
    html = section(page)
    assert (
        "<strong>Serverless</strong>: 0 to 3 replicas, scales to zero after 15 min idle, "
        "target 4 requests in flight per replica." in html
    )
    ttft = floatformat(round(bucket_upper_ms(bucket(800)), 2), 0)  # the p95 of the last 5 minutes, over 500
    assert "at most 500 ms" in html and f'<span>{ttft} ms <strong class="error">(over the target)</strong>' in html
    assert "<span>100.0 tokens/s</span>" in html  # 900 tokens in 9 s of generation; no target to miss
    assert "8 requests in flight" in html
    assert "1 breach in the last 24 hours." in html  # the older one is listed, not counted
    assert html.count('<th scope="row"><time') == 2 and "<strong>open</strong>" in html and "recovered <time" in html
    assert 'at least 50.0 tokens/s</td><td data-label="Measured">31.0 tokens/s</td>' in html
    assert "Balanced on CPU (this machine)" in html
    assert 'class="callout error">Last preset change: <strong>stopped</strong>. Rolling to preset Balanced' in html
    for form in ('value="0"', 'name="scale_to_zero" value="on" checked', 'value="500"', 'value="8"',
                 '<option value="balanced" selected>'):  # fmt: skip
        assert form in html, form


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({}, "1 replica, fixed"),
        ({"min_replicas": 2, "max_replicas": 2}, "2 replicas, fixed"),
        ({"max_replicas": 3, "scaling_target": 2.5, "scaling_metric": "queue_depth"},
         "1 to 3 replicas, target 2.5 requests waiting per replica"),
        ({"min_replicas": 0, "scale_to_zero": True, "idle_timeout_seconds": 7200},
         "0 to 1 replicas, scales to zero after 2 h idle"),
        ({"min_replicas": 1, "max_replicas": 1, "scale_to_zero": True}, "1 replica, fixed"),  # the minimum keeps one
    ],
)  # fmt: skip
def test_the_settings_in_words(summary: dict[str, Any], expected: str) -> None:
    assert scaling_summary(Deployment(**summary)) == expected


def test_a_scaling_change_is_saved_and_answers_with_the_section(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    browser = signed_in(alice)
    changed = browser.post(f"/deployments/{deployment.pk}/scaling", {
        "min_replicas": "0", "max_replicas": "3", "scale_to_zero": "on", "idle_timeout_seconds": "600",
        "metric": "queue_depth", "target": "2.5", "cold_start_wait_seconds": "20",
    })  # fmt: skip
    assert Deployment.objects.get(pk=deployment.pk).cold_start_wait_seconds == 20
    assert changed.status_code == 302 and changed["Location"] == f"/deployments/{deployment.pk}/#scaling-h"
    assert settings_of(deployment)[:6] == (0, 3, True, 600, "queue_depth", 2.5)
    html = section(browser.get(changed["Location"]).content.decode())
    assert "0 to 3 replicas, scales to zero after 10 min idle, target 2.5 requests waiting per replica." in html

    unticked = browser.post(f"/deployments/{deployment.pk}/scaling", SCALING)  # the box not posted: off
    assert unticked.status_code == 302 and settings_of(deployment)[:6] == (1, 1, False, 900, "concurrency", 4.0)


@pytest.mark.parametrize(
    ("typed", "field", "says"),
    [
        ({"min_replicas": "4", "max_replicas": "2"}, "scaling-min", "The minimum can't be above the maximum (4 > 2)."),
        ({"min_replicas": "two"}, "scaling-min", "Minimum replicas must be a whole number, not 'two'."),
        ({"max_replicas": "1.5"}, "scaling-max", "Maximum replicas must be a whole number, not '1.5'."),
        ({"max_replicas": ""}, "scaling-max", "Maximum replicas is empty: enter a whole number."),
        ({"idle_timeout_seconds": "10"}, "scaling-idle",
         "The idle timeout must be between 60 seconds and 604800 (a week)."),
        ({"target": "fast"}, "scaling-target", "Target per replica must be a number, not 'fast'."),
        ({"target": "nan"}, "scaling-target", "Target per replica must be a number, not 'nan'."),
        ({"min_replicas": "0"}, "scaling-min",
         "A minimum of 0 replicas needs “Scale to zero after the idle timeout” ticked."),
        ({"cold_start_wait_seconds": "700"}, "scaling-hold",
         "The cold-start wait must be between 0 and 600 seconds (0 answers at once with 202)."),
    ],
)  # fmt: skip
def test_a_refused_scaling_change_is_shown_inline_and_changes_nothing(
    alice: Persona, catalog: None, typed: dict[str, str], field: str, says: str
) -> None:
    deployment = running(alice)
    before = settings_of(deployment)
    refused = signed_in(alice).post(f"/deployments/{deployment.pk}/scaling", {**SCALING, **typed})
    assert refused.status_code == 400
    html = section(refused.content.decode())
    assert f'<p class="error" id="scaling-error" role="alert">{escape(says)}</p>' in html
    name, value = next(iter(typed.items()))
    assert f'id="{field}" name="{name}"' in html and f'value="{value}" aria-invalid="true"' in html
    assert html.count('aria-invalid="true"') == (2 if field == "scaling-target" else 1)  # the metric goes with it
    assert settings_of(deployment) == before


def test_sla_targets_are_set_and_an_empty_field_removes_one(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    browser = signed_in(alice)
    url = f"/deployments/{deployment.pk}/sla"
    set_ = browser.post(url, {"ttft_target_ms": "500", "throughput_target_tps": "40.5", "concurrency_limit": "8"})
    assert set_.status_code == 302 and set_["Location"] == f"/deployments/{deployment.pk}/#scaling-h"
    assert settings_of(deployment)[6:9] == (500, 40.5, 8)
    html = section(browser.get(set_["Location"]).content.decode())
    assert "at most 500 ms" in html and "at least 40.5 tokens/s" in html and "8 requests in flight" in html

    cleared = browser.post(url, {"ttft_target_ms": "", "throughput_target_tps": "40.5", "concurrency_limit": " "})
    assert cleared.status_code == 302 and settings_of(deployment)[6:9] == (None, 40.5, None)
    html = section(browser.get(set_["Location"]).content.decode())
    assert 'name="ttft_target_ms" type="number" min="1" max="600000" step="1" value=""' in html


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ({"ttft_target_ms": "fast"}, "Time to first token target (ms) must be a whole number, not 'fast'."),
        ({"throughput_target_tps": "lots"}, "Throughput target (tokens/s) must be a number, not 'lots'."),
        (
            {"concurrency_limit": "0"},
            "The concurrency limit must be between 1 and 100000; leave it empty for no target.",
        ),
    ],
)
def test_a_refused_sla_change_is_shown_inline_and_changes_nothing(
    alice: Persona, catalog: None, typed: dict[str, str], says: str
) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(ttft_target_ms=900, throughput_target_tps=20.0)
    before = settings_of(deployment)
    posted = {"ttft_target_ms": "500", "throughput_target_tps": "", "concurrency_limit": "4", **typed}
    refused = signed_in(alice).post(f"/deployments/{deployment.pk}/sla", posted)
    assert refused.status_code == 400
    html = section(refused.content.decode())
    assert f'id="sla-error" role="alert">{escape(says)}</p>' in html
    name, value = next(iter(typed.items()))
    assert f'name="{name}"' in html and f'value="{value}" aria-invalid="true" aria-describedby="sla-error"' in html
    assert all(f'value="{value}"' in html for value in posted.values())  # what was typed, not what is saved
    assert settings_of(deployment) == before


@pytest.fixture
def sim(catalog: None, settings: Any) -> Iterator[None]:
    """A GPU cloud offering H100 and MI300X in atl1 (the rollout's first replica is only recorded:
    its provisioning waits for a commit that a test's transaction never makes)."""
    tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    sim_cloud.provider_create(tag, gpus={"mi300x": {"price": 2_590_000, "capacity": 2},
                                         "h100": {"price": 4_410_000, "capacity": 2}})  # fmt: skip
    yield
    sim_cloud.stop_all(tag)


def on_mi300x(persona: Persona, model: str = "llama-3.1-8b-instruct") -> Deployment:
    deployment = running(persona)
    Deployment.objects.filter(pk=deployment.pk).update(model_id=model, gpu_type_id="mi300x", region_id="atl1",
                                                       preset_id="balanced", hourly_price_micros=2_590_000)  # fmt: skip
    Instance.objects.filter(deployment=deployment).update(gpu_type_id="mi300x", preset_id="balanced")
    deployment.refresh_from_db()
    return deployment


def test_a_preset_change_starts_a_rolling_replacement(alice: Persona, sim: None) -> None:
    fund(alice.org, 50 * USD)
    deployment = on_mi300x(alice)
    browser = signed_in(alice)
    offered = section(browser.get(f"/deployments/{deployment.pk}/").content.decode())
    assert '<option value="balanced" selected>Balanced — AMD MI300X; General production</option>' in offered
    assert '<option value="speed">Speed — NVIDIA H100; Interactive chat, coding</option>' in offered

    changed = browser.post(f"/deployments/{deployment.pk}/preset", {"preset": "speed"})
    assert changed.status_code == 302 and changed["Location"] == f"/deployments/{deployment.pk}/#scaling-h"
    deployment.refresh_from_db()
    assert (deployment.preset_id, deployment.gpu_type_id, deployment.hourly_price_micros) == (
        "speed",
        "h100",
        4_410_000,
    )
    assert (deployment.rollout_state, deployment.rollout_total, deployment.rollout_from_preset_id) == (
        "rolling", 1, "balanced"
    )  # fmt: skip
    new = deployment.instances.get(gpu_type_id="h100")
    assert new.state == "provisioning" and deployment.instances.filter(state="ready", gpu_type_id="mi300x").exists()
    html = section(browser.get(changed["Location"]).content.decode())
    assert "Last preset change: <strong>in progress</strong>" in html and f"launching replica 1 of 1 ({new.pk})" in html
    assert 'name="preset"' not in html and "Another preset can be applied when this change has finished." in html


@pytest.mark.parametrize(
    ("model", "preset", "says"),
    [
        ("llama-3.1-8b-instruct", "turbo", "Unknown preset 'turbo'; use one of balanced, cost, latency, speed."),
        ("llama-3.3-70b-instruct", "speed",
         "Llama 3.3 70B Instruct needs 160 GB of VRAM; the Speed preset runs on NVIDIA H100 with 80 GB."),
        ("llama-3.1-8b-instruct", "", "preset is required: one of balanced, cost, latency, speed."),
    ],
)  # fmt: skip
def test_an_unknown_or_too_small_preset_is_refused_inline_and_changes_nothing(
    alice: Persona, sim: None, model: str, preset: str, says: str
) -> None:
    fund(alice.org, 50 * USD)
    deployment = on_mi300x(alice, model)
    before = settings_of(deployment)
    refused = signed_in(alice).post(f"/deployments/{deployment.pk}/preset", {"preset": preset})
    assert refused.status_code == 400
    html = section(refused.content.decode())
    assert f'<p class="error" id="preset-error" role="alert">{escape(says)}</p>' in html
    assert 'name="preset" aria-invalid="true" aria-describedby="preset-error"' in html
    assert ('<option value="speed"' in html) == (model == "llama-3.1-8b-instruct")  # only GPUs that hold it
    assert settings_of(deployment) == before


def test_viewers_see_the_settings_without_forms_and_are_refused(alice: Persona, bob: Persona, catalog: None) -> None:
    deployment = running(alice)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = signed_in(bob)  # bob works in alice's org
    html = section(viewer.get(f"/deployments/{deployment.pk}/").content.decode())
    assert "1 replica, fixed" in html and "<form" not in html
    before = settings_of(deployment)
    for path, body, action in (
        ("scaling", {**SCALING, "max_replicas": "3"}, "changing scaling"),
        ("sla", {"ttft_target_ms": "500", "concurrency_limit": ""}, "changing SLA targets"),
        ("preset", {"preset": "speed"}, "changing the preset"),
    ):  # fmt: skip
        refused = viewer.post(f"/deployments/{deployment.pk}/{path}", body)
        assert refused.status_code == 403, path
        assert f"is viewer; {action} needs member or higher." in refused.content.decode()
    assert settings_of(deployment) == before


def test_another_orgs_deployment_is_not_found_and_stopped_ones_take_no_change(
    alice: Persona, charlie: Persona, catalog: None
) -> None:
    deployment = running(alice)
    before = settings_of(deployment)
    outsider = signed_in(charlie)
    for path, body in (("scaling", {**SCALING, "max_replicas": "3"}), ("sla", {"ttft_target_ms": "500"}),
                       ("preset", {"preset": "speed"})):  # fmt: skip
        assert outsider.post(f"/deployments/{deployment.pk}/{path}", body).status_code == 404, path
    assert settings_of(deployment) == before

    Deployment.objects.filter(pk=deployment.pk).update(status="stopped")
    browser = signed_in(alice)
    html = section(browser.get(f"/deployments/{deployment.pk}/").content.decode())
    assert "This deployment is stopped: its scaling, SLA targets and preset no longer change." in html
    assert "<form" not in html
    refused = browser.post(f"/deployments/{deployment.pk}/scaling", {**SCALING, "max_replicas": "3"})
    assert refused.status_code == 409
    assert "The deployment is stopped; deploy it again to scale it." in section(refused.content.decode())
    assert settings_of(deployment) == before
