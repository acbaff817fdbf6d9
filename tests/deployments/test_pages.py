"""The deployments pages: the list and a deployment's detail show the org's deployments with real
connection values, replicas, events, metrics and cost; stopping asks first; other orgs see 404."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Membership
from accounts.roles import Role
from deployments.models import Deployment
from fleet import tasks
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
    assert 'model="smollm2-135m-instruct"' in page
    assert "curl http://testserver/v1/chat/completions" in page
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
