"""Issue 18: the container endpoints of reference/002 made through our own API and pages. POST
/api/v1/deployments with kind container takes our flat fields (image, command, port, gpu_type,
gpu_count, region, cloud_type, replicas), refuses in those names, and answers the deployment in our
shape; POST /deployments/{id}/scale sets its replicas; DELETE stops it. The "New container endpoint"
form makes the same endpoint, and the deployment page shows how to reach it and changes its replicas."""

from __future__ import annotations

import html
import json
from typing import Any

import httpx
import pytest
from django.test import Client

from accounts.models import Membership
from accounts.roles import Role
from billing.models import CreditHold, UsageMeter
from catalog.models import Offer
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, Pod
from fleet.models import Instance, InstanceState
from tests.deployments.test_inference_service import SERVER, answered
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

USD = 1_000_000
GOOD = {"kind": "container", "name": "web", "image": "gpucloud/shell", "command": SERVER, "port": 8080,
        "gpu_type": "cpu"}  # fmt: skip
# Reference/002's names, which none of our refusals may use.
THEIRS = ("deploy_metadata", "resource_metadata", "image_url", "gpu_num", "flavor_id", "target_instance_number")


def post(client: Client, persona: Persona, path: str, body: Any, capture: Any = None) -> Any:
    if capture is None:
        return client.post(f"/api/v1{path}", data=json.dumps(body), content_type="application/json", **persona.auth)
    with capture(execute=True):
        return client.post(f"/api/v1{path}", data=json.dumps(body), content_type="application/json", **persona.auth)


def nothing_made() -> bool:
    return not (Deployment.objects.exists() or Pod.objects.exists() or Instance.objects.exists()
                or CreditHold.objects.exists())  # fmt: skip


@pytest.mark.django_db(transaction=True)  # the gateway's server thread must see committed rows
def test_a_container_made_in_our_fields_answers_through_the_platform_scales_and_stops(
    server: str, client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 10 * USD)
    created = post(client, alice, "/deployments", {**GOOD, "replicas": 1}, capture)
    assert created.status_code == 201, created.content
    made = created.json()
    service_id = made["id"]
    url = f"http://testserver/services/{service_id}/"
    local = Offer.objects.get(provider="local", gpu_type="cpu", spot=False)
    assert service_id.startswith("svc_") and made["kind"] == "container" and made["name"] == "web"
    assert (made["gpu_type"], made["region"], made["replicas"], made["model_id"]) == ("cpu", "local", 1, None)
    assert made["cloud_type"] == local.tier  # any: the tier it was placed on
    assert made["container"] == {"image": "gpucloud/shell", "command": SERVER, "port": 8080, "url": url}
    assert made["endpoint_url"] == url
    assert made["hourly_cost_usd"] == local.price_per_hour_micros / USD  # its one replica, launched already
    shown = client.get(f"/api/v1/deployments/{service_id}", **alice.auth).json()
    assert shown["status"] == "active" and shown["container"] == made["container"]
    assert [i["state"] for i in shown["instances"]] == ["ready"]

    key = {"authorization": f"Bearer {alice.key}"}
    reached = f"{server}/services/{service_id}/"
    assert answered(reached, key).status_code == 200
    assert "Directory listing" in httpx.get(f"{reached}?x=1", headers=key).text

    scaled = post(client, alice, f"/deployments/{service_id}/scale", {"replicas": 2}, capture)
    assert scaled.status_code == 200, scaled.content
    assert scaled.json()["replicas"] == 2 and scaled.json()["scaling"]["max_replicas"] == 2
    assert Instance.objects.filter(deployment_id=service_id, state=InstanceState.READY).count() == 2
    stopped = post(client, alice, f"/deployments/{service_id}/scale", {"replicas": 0}, capture)
    assert stopped.status_code == 200 and stopped.json()["status"] == DeploymentStatus.SCALED_TO_ZERO
    assert not Instance.objects.filter(deployment_id=service_id).exclude(state=InstanceState.TERMINATED).exists()
    again = post(client, alice, f"/deployments/{service_id}/scale", {"replicas": 1}, capture)
    assert again.status_code == 200 and again.json()["replicas"] == 1
    assert client.get(f"/api/v1/deployments/{service_id}", **alice.auth).json()["status"] == "active"
    assert answered(reached, key).status_code == 200  # a new replica answers

    with capture(execute=True):
        deleted = client.delete(f"/api/v1/deployments/{service_id}", **alice.auth)
    assert deleted.status_code == 200 and deleted.json()["status"] in ("stopping", "stopped")
    assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.STOPPED
    machines = Instance.objects.filter(deployment_id=service_id)
    assert {m.state for m in machines} == {InstanceState.TERMINATED}
    assert not UsageMeter.objects.filter(meter_key__in=machines.values("pk"), ended_at=None).exists()
    listed = client.get("/api/v1/deployments", **alice.auth).json()
    assert [(d["id"], d["status"]) for d in listed] == [(service_id, "stopped")]  # kept: scale starts it again


def test_refusals_name_our_fields_and_create_nothing(client: Client, alice: Persona, fleet: str) -> None:
    fund(alice.org, 10 * USD)
    cases = [
        ({k: v for k, v in GOOD.items() if k != "image"}, 400, "image"),
        ({k: v for k, v in GOOD.items() if k != "port"}, 400, "port"),
        ({**GOOD, "image": "python:3.10-slim"}, 400, "image"),  # the local provider runs its own images only
        ({**GOOD, "image": "Not An Image"}, 400, "image"),
        ({**GOOD, "port": 0}, 422, "port"),
        ({**GOOD, "port": 70000}, 422, "port"),
        ({**GOOD, "port": "8080"}, 422, "port"),
        ({**GOOD, "command": "x" * 4097}, 422, "command"),
        ({**GOOD, "gpu_count": 3}, 400, "gpu_count"),
        ({**GOOD, "gpu_count": 2}, 400, "gpu_count"),  # the local machine has one "GPU"
        ({**GOOD, "gpu_type": "nope"}, 404, "gpu_type"),
        ({**GOOD, "gpu_type": "h100"}, 409, "gpu_type"),  # in the catalog, offered by no provider here
        ({**GOOD, "region": "nowhere"}, 404, "region"),
        ({**GOOD, "region": "local", "cloud_type": "community"}, 409, "region"),
        ({**GOOD, "cloud_type": "premium"}, 400, "cloud_type"),
        ({**GOOD, "replicas": 0}, 400, "replicas"),
        ({**GOOD, "replicas": 99}, 400, "replicas"),
        ({**GOOD, "model_id": "smollm2-135m-instruct"}, 400, "model_id"),
        ({**GOOD, "preset": "speed"}, 400, "preset"),
        ({**GOOD, "spot": True}, 400, "spot"),
        ({**GOOD, "start_cold": True}, 400, "start_cold"),
        ({**GOOD, "idle_timeout_seconds": 900}, 400, "idle_timeout_seconds"),
        ({**GOOD, "kind": "model", "model_id": "smollm2-135m-instruct", "region": "local"}, 400, "image"),
        ({"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", "port": 80}, 400, "port"),
        ({"gpu_type": "cpu", "region": "local"}, 400, "model_id"),
        ({**GOOD, "kind": "pod"}, 400, "kind"),
        ({"model_id": "smollm2-135m-instruct", "gpu_type": "cpu"}, 400, "region"),
    ]  # fmt: skip
    for body, status, param in cases:
        answer = post(client, alice, "/deployments", body)
        error = answer.json()["error"]
        assert (answer.status_code, error["param"]) == (status, param), (body, answer.json())
        assert not any(name in error["message"] for name in THEIRS), error
    assert nothing_made()


def test_who_may_create_and_who_pays(client: Client, alice: Persona, bob: Persona, fleet: str) -> None:
    broke = post(client, alice, "/deployments", GOOD)  # nothing on the balance
    assert broke.status_code == 402 and nothing_made()
    fund(alice.org, 10 * USD)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = post(client, bob, "/deployments", GOOD)
    assert viewer.status_code == 403 and nothing_made()


def test_scale_refusals_change_nothing(
    client: Client, alice: Persona, charlie: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    model = running(alice)
    refused = post(client, alice, f"/deployments/{model.pk}/scale", {"replicas": 2})
    assert refused.status_code == 409 and "PATCH /deployments/{id}/scaling" in refused.json()["error"]["message"]
    with django_capture_on_commit_callbacks():  # created, its replica not launched yet: provisioning
        service_id = post(client, alice, "/deployments", GOOD).json()["id"]
    for body, status, param in (({"replicas": 9}, 400, "replicas"), ({"replicas": -1}, 400, "replicas"),
                                ({"replicas": "2"}, 422, "replicas"), ({}, 422, "replicas")):  # fmt: skip
        answer = post(client, alice, f"/deployments/{service_id}/scale", body)
        assert (answer.status_code, answer.json()["error"]["param"]) == (status, param), body
    early = post(client, alice, f"/deployments/{service_id}/scale", {"replicas": 2})
    assert early.status_code == 409 and early.json()["error"]["type"] == "conflict_error"
    assert post(client, charlie, f"/deployments/{service_id}/scale", {"replicas": 2}).status_code == 404
    assert Deployment.objects.get(pk=service_id).desired_replicas == 1
    assert Instance.objects.filter(deployment_id=service_id).count() == 1
    with django_capture_on_commit_callbacks(execute=True):  # ended for good through reference/002's API
        assert client.delete(f"/api/v1/inference-service/{service_id}", **alice.auth).status_code == 200
    gone = post(client, alice, f"/deployments/{service_id}/scale", {"replicas": 1})
    assert gone.status_code == 409 and "deleted" in gone.json()["error"]["message"]
    assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.STOPPED


def test_any_cloud_type_takes_the_cheapest_tier_with_a_machine_free(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    body = {**GOOD, "gpu_type": "h100", "image": "python:3.10-slim", "command": "python app.py"}
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 2}},
                                 community={"h100": 1_200_000}):  # fmt: skip
        cheap = post(client, alice, "/deployments", body, django_capture_on_commit_callbacks)
        assert cheap.status_code == 201, cheap.content
        assert (cheap.json()["cloud_type"], cheap.json()["region"]) == ("community", "atl1")
        assert cheap.json()["instances"][0]["hourly_price_usd"] == 1.2
        Offer.objects.filter(provider="sim", tier="community").update(available=0)
        secure = post(client, alice, "/deployments", body, django_capture_on_commit_callbacks)
        assert secure.status_code == 201 and secure.json()["cloud_type"] == "secure"
        assert secure.json()["instances"][0]["hourly_price_usd"] == 2.0
        Offer.objects.filter(provider="sim").update(available=0)
        full = post(client, alice, "/deployments", body)
        assert full.status_code == 409 and full.json()["error"]["type"] == "no_capacity"
    assert Deployment.objects.filter(kind=DeploymentKind.CONTAINER).count() == 2


FORM = {"name": "files", "image": "gpucloud/shell", "command": SERVER, "port": "8080", "gpu_type": "cpu",
        "gpu_count": "1", "region": "", "cloud_type": "any", "replicas": "1"}  # fmt: skip


def test_the_form_shows_the_price_per_replica_and_makes_an_endpoint_whose_page_shows_how_to_reach_it(
    alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    browser = signed_in(alice)
    listing = browser.get("/deployments/").content.decode()
    assert 'href="/containers/new">New container endpoint</a>' in listing
    form = browser.get("/containers/new")
    page = form.content.decode()
    local = Offer.objects.get(provider="local", gpu_type="cpu", spot=False)
    assert form.status_code == 200 and 'action="/containers/new"' in page
    for name in ("name", "image", "command", "port", "gpu_type", "gpu_count", "region", "cloud_type", "replicas"):
        assert f'name="{name}"' in page, name
    assert f"${local.price_per_hour_micros / USD:.2f}/hr per replica" in page

    with django_capture_on_commit_callbacks(execute=True):
        made = browser.post("/containers/new", FORM)
    deployment = Deployment.objects.get()
    assert made.status_code == 302 and made["Location"] == f"/deployments/{deployment.pk}/"
    assert (deployment.kind, deployment.name, deployment.status) == ("container", "files", "active")
    assert (deployment.pod.image, deployment.pod.ports) == ("gpucloud/shell", ["8080/http"])
    detail = browser.get(made["Location"]).content.decode()
    url = f"http://testserver/services/{deployment.pk}/"
    assert f'<span class="mono" id="service-url">{url}</span>' in detail
    assert f'curl {url} -H "Authorization: Bearer $GPUCLOUD_API_KEY"' in detail
    assert html.escape(SERVER) in detail and ">gpucloud/shell<" in detail
    assert f'action="/deployments/{deployment.pk}/replicas#scaling-h"' in detail
    assert 'id="replicas-live" hx-get=' in detail  # re-read as its status moves: the form appears once it runs
    assert f'action="/deployments/{deployment.pk}/scaling#scaling-h"' not in detail  # no autoscaler: it would 409
    assert f'href="/deployments/{deployment.pk}/stop"' in detail
    # What measures or tunes a model's engine is not shown: nothing meters a container per request.
    for model_only in ('id="compare-h"', 'id="sla-h"', 'id="preset-h"', 'id="metrics-h"', "<dt>Model</dt>"):
        assert model_only not in detail, model_only
    assert '<dt>Image</dt><dd class="mono">gpucloud/shell</dd>' in detail


@pytest.mark.parametrize(
    ("field", "typed", "status", "said"),
    [
        ("image", "python:3.10-slim", 400, "The local provider has no container runtime"),
        ("image", "Not An Image", 400, "is not an image reference"),
        ("port", "http", 400, "is not a whole number"),
        ("port", "70000", 400, "is not a port"),
        ("gpu_count", "2", 400, "at most 1 GPU(s); gpu_count asked 2"),
        ("replicas", "0", 400, "replicas must be between 1 and"),
        ("region", "nowhere", 404, "No region 'nowhere'"),
    ],
    ids=["image-not-run-here", "image-malformed", "port-not-a-number", "port-out-of-range", "gpu-count-too-many",
         "no-replicas", "unknown-region"],
)  # fmt: skip
def test_a_refused_form_is_shown_again_with_the_message_by_its_field_and_makes_nothing(
    alice: Persona, fleet: str, field: str, typed: str, status: int, said: str
) -> None:
    fund(alice.org, 10 * USD)
    answer = signed_in(alice).post("/containers/new", {**FORM, field: typed})
    page = answer.content.decode()
    assert answer.status_code == status
    error = page.split(f'id="{field}-error" role="alert">', 1)[1].split("</p>", 1)[0]
    assert said in html.unescape(error), error
    assert page.count(f"{field}-error") >= 2  # the field points at its message
    assert f'value="{html.escape(SERVER)}"' in page  # what was typed stays
    assert nothing_made()


def test_the_replica_form_scales_starts_and_refuses_on_the_page(
    alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    browser = signed_in(alice)
    with django_capture_on_commit_callbacks(execute=True):
        service_id = browser.post("/containers/new", FORM)["Location"].split("/")[2]
    for typed, said in (("two", "Replicas must be a whole number, not 'two'."),
                        ("9", "replicas must be between 0 (stopped) and 8.")):  # fmt: skip
        refused = browser.post(f"/deployments/{service_id}/replicas", {"replicas": typed})
        assert refused.status_code == 400 and said in html.unescape(refused.content.decode())
        assert f'value="{typed}"' in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        scaled = browser.post(f"/deployments/{service_id}/replicas", {"replicas": "2"})
    assert scaled.status_code == 302 and scaled["Location"] == f"/deployments/{service_id}/#scaling-h"
    assert Instance.objects.filter(deployment_id=service_id, state=InstanceState.READY).count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/deployments/{service_id}/replicas", {"replicas": "0"})
    assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.SCALED_TO_ZERO
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/deployments/{service_id}/stop")
    stopped = browser.get(f"/deployments/{service_id}/").content.decode()
    assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.STOPPED
    assert "to 1 or more to start it again" in stopped and "Deploy it again to run with other settings" not in stopped
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/deployments/{service_id}/replicas", {"replicas": "1"})
    assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.ACTIVE
    model = running(alice)
    assert (
        f'action="/deployments/{model.pk}/scaling#scaling-h"'
        in browser.get(f"/deployments/{model.pk}/").content.decode()
    )
    refused = browser.post(f"/deployments/{model.pk}/replicas", {"replicas": "2"})
    assert refused.status_code == 409 and Deployment.objects.get(pk=model.pk).desired_replicas == 1


def test_signed_out_and_viewers_make_nothing(client: Client, alice: Persona, bob: Persona, fleet: str) -> None:
    fund(alice.org, 10 * USD)
    for method in ("get", "post"):
        answer = getattr(client, method)("/containers/new", FORM if method == "post" else None)
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/"), method
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = signed_in(bob)
    assert "creating container endpoints needs member or higher" in viewer.get("/containers/new").content.decode()
    assert viewer.post("/containers/new", FORM).status_code == 403
    assert nothing_made()
