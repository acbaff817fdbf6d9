"""The deployments pages: the list and a deployment's detail show the org's deployments with real
connection values, replicas, events, metrics and cost; stopping asks first; other orgs see 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Membership
from accounts.roles import Role
from deployments.models import Deployment
from fleet import tasks
from fleet.models import Instance
from tests.support.billing import fund
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def test_the_list_shows_this_orgs_deployments_and_running_cost(alice: Persona, charlie: Persona, catalog: None) -> None:
    mine = running(alice, "alpha", replicas=2)
    running(charlie, "charlies-secret")
    page = signed_in(alice).get("/deployments/").content.decode()
    assert "alpha" in page and mine.pk in page and "charlies-secret" not in page
    assert "2 of 2" in page  # replicas ready
    assert "$7.20" in page  # 2 replicas at $3.60/h
    # cost so far, ticking in the browser from what has accrued: 2 first minutes at $3.60/h
    assert 'data-cost-micros="120000" data-rate-micros="7200000"' in page and ">$0.12<" in page


def test_the_detail_page_says_spot_or_on_demand_and_the_tier(alice: Persona, catalog: None) -> None:
    """The API answers `spot` and `cloud_type`; the page said neither, so a spot deployment looked
    like an on-demand one. It says both, and each replica's tier."""
    on_demand = running(alice, "steady")
    spot = running(alice, "cheap")
    Deployment.objects.filter(pk=spot.pk).update(spot=True, cloud_type="community")
    Instance.objects.filter(deployment=spot).update(tier="community", spot=True)
    client = signed_in(alice)
    page = client.get(f"/deployments/{on_demand.pk}/").content.decode()
    assert '<dd id="machines">On-demand · secure or community tier (the cheaper)</dd>' in page
    page = client.get(f"/deployments/{spot.pk}/").content.decode()
    said = "Spot (interruptible: a replica taken back is replaced) · community tier"
    assert f'<dd id="machines">{said}</dd>' in page
    assert '<td data-label="Provider">local <span class="muted">(community, spot)</span></td>' in page


def test_the_list_reads_a_fixed_number_of_queries(
    alice: Persona, catalog: None, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(alice)
    running(alice, "first")
    client.get("/deployments/")  # warm the session and the user
    for n in range(20):
        running(alice, f"d{n}", replicas=2)
    with django_assert_max_num_queries(12):
        page = client.get("/deployments/")
    assert page.status_code == 200 and page.content.decode().count("of 2") == 20


def test_the_detail_page_has_real_connection_values(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    page = signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode()
    assert "<title>chat · gpucloud</title>" in page
    assert 'base_url="http://testserver/v1"' in page
    assert f'model="{deployment.pk}"' in page  # its own id: never another deployment of the model (issue 14)
    assert "curl http://testserver/v1/chat/completions" in page
    assert f'"model": "{deployment.pk}"' in page and "Deploy again" not in page
    assert deployment.instances.get().pk in page and "Ready" in page
    assert "Engine healthy." in page
    assert "$0.12 billed so far" in page
    # The running cost the page ticks from: one replica just launched = its first minute, at $3.60/h.
    assert 'data-cost-micros="60000" data-rate-micros="3600000"' in page
    assert "Stop…" in page


def test_other_orgs_deployments_are_404(alice: Persona, charlie: Persona, catalog: None) -> None:
    deployment = running(alice)
    client = signed_in(charlie)
    for path in (f"/deployments/{deployment.pk}/", f"/deployments/{deployment.pk}/stop"):
        assert client.get(path).status_code == 404
    assert client.post(f"/deployments/{deployment.pk}/stop").status_code == 404
    deployment.refresh_from_db()
    assert deployment.status == "active"


def test_stopping_asks_first_then_tears_down(
    alice: Persona, catalog: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:

    terminated: list[str] = []
    monkeypatch.setattr(tasks.instance_terminate_task, "delay", lambda instance_id: terminated.append(instance_id))
    deployment = running(alice)
    client = signed_in(alice)
    confirm = client.get(f"/deployments/{deployment.pk}/stop")
    assert confirm.status_code == 200 and "Stop the deployment" in confirm.content.decode()
    deployment.refresh_from_db()
    assert deployment.status == "active" and terminated == []  # asking changed nothing
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/deployments/{deployment.pk}/stop")
    assert response.status_code == 302 and response["Location"] == f"/deployments/{deployment.pk}/"
    deployment.refresh_from_db()
    assert deployment.status == "stopping"
    assert terminated == [deployment.instances.get().pk]


def test_viewers_cannot_stop_and_are_told_why(alice: Persona, bob: Persona, catalog: None) -> None:
    deployment = running(alice)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    client = signed_in(bob)
    assert "Stop…" not in client.get(f"/deployments/{deployment.pk}/").content.decode()
    response = client.post(f"/deployments/{deployment.pk}/stop", follow=True)
    assert "needs member or higher" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.status == "active"


def test_the_list_pages_by_fifty_newest_first(alice: Persona, catalog: None) -> None:
    for n in range(53):
        Deployment.objects.create(org=alice.org, name=f"dep-{n:02d}", status="stopped",
                                  model_id="smollm2-135m-instruct", gpu_type_id="cpu", region_id="local",
                                  hourly_price_micros=1)  # fmt: skip
    client = signed_in(alice)
    first = client.get("/deployments/").content.decode()
    assert "dep-52" in first and "dep-03" in first and "dep-02" not in first  # the newest fifty
    assert "1\N{EN DASH}50 of 53" in first and 'href="?page=2" rel="next"' in first
    second = client.get("/deployments/?page=2").content.decode()
    assert "dep-02" in second and "dep-00" in second and "dep-03" not in second and "51\N{EN DASH}53 of 53" in second
    assert 'href="?page=1" rel="prev"' in second
    for bad in ("0", "x", "99", "\N{SUPERSCRIPT TWO}"):  # out of range or not a number: the nearest real page
        assert client.get(f"/deployments/?page={bad}").status_code == 200


def test_a_stopped_deployment_shows_no_live_snippet_and_deploys_again_with_the_same_settings(
    alice: Persona, catalog: None
) -> None:
    fund(alice.org, 10_000_000)
    stopped = running(alice)
    Deployment.objects.filter(pk=stopped.pk).update(
        status="stopped", stopped_at=timezone.now(), kind="serverless", min_replicas=0, max_replicas=3,
        scale_to_zero=True, idle_timeout_seconds=600, scaling_target=2.0, cold_start_wait_seconds=30,
        concurrency_limit=7, ttft_target_ms=900,
    )  # fmt: skip
    client = signed_in(alice)
    page = client.get(f"/deployments/{stopped.pk}/").content.decode()
    assert 'id="snippet-python"' not in page and 'id="snippet-curl"' not in page and "base_url=" not in page
    assert "nothing answers at its endpoint" in page and "Deploy again" in page

    response = client.post(f"/deployments/{stopped.pk}/redeploy")
    again = Deployment.objects.exclude(pk=stopped.pk).get(org=alice.org)
    assert response.status_code == 302 and response["Location"] == f"/deployments/{again.pk}/"
    carried = ("name", "kind", "model_id", "gpu_type_id", "region_id", "min_replicas", "max_replicas",
               "scale_to_zero", "idle_timeout_seconds", "scaling_target", "cold_start_wait_seconds",
               "concurrency_limit", "ttft_target_ms")  # fmt: skip
    assert [getattr(again, f) for f in carried] == [getattr(Deployment.objects.get(pk=stopped.pk), f) for f in carried]
    assert again.status == "provisioning" and again.desired_replicas == 1
    assert Deployment.objects.get(pk=stopped.pk).status == "stopped"  # the old one keeps its history


def test_deploy_again_is_refused_for_a_running_deployment_and_for_viewers(
    alice: Persona, bob: Persona, catalog: None
) -> None:
    fund(alice.org, 10_000_000)
    active = running(alice)
    refused = signed_in(alice).post(f"/deployments/{active.pk}/redeploy")
    assert refused.status_code == 409 and "only a stopped one" in refused.content.decode()
    Deployment.objects.filter(pk=active.pk).update(status="stopped")
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = signed_in(bob)
    assert "Deploy again" not in viewer.get(f"/deployments/{active.pk}/").content.decode()
    assert viewer.post(f"/deployments/{active.pk}/redeploy").status_code == 403
    assert Deployment.objects.filter(org=alice.org).count() == 1


def test_an_embedding_deployments_quick_start_calls_embeddings(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(model_id="smollm2-135m-embedding")
    page = signed_in(alice).get(f"/deployments/{deployment.pk}/").content.decode()
    assert "client.embeddings.create(" in page and "curl http://testserver/v1/embeddings" in page
    assert "chat.completions" not in page
