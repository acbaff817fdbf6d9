"""Issue 18: reference/002's flavor and inference-service API. A flavor groups the stored offers (GPU
type x region x tier) under an id that survives offer refreshes; a service is a container endpoint: on
the local provider its command runs as a local pod does, it answers through the platform at
/services/{id}/ with an account key of its org, scales with PUT (0 = stopped), is gone after DELETE,
and its instances' GPU-seconds are posted to the ledger as service SERVERLESS."""

from __future__ import annotations

import html
import time
from typing import Any

import httpx
import pytest
from django.test import Client

from accounts.models import Membership
from accounts.roles import Role
from billing.invariants import ledger_violations
from billing.models import CreditHold, LedgerTransaction, Service, TransactionKind, UsageMeter
from catalog.gpu_units import base_slug
from catalog.models import GpuType, Offer
from catalog.selectors import offers_live
from deployments.models import Deployment, DeploymentStatus, Pod
from deployments.services import deployments_stop_for_nonpayment
from fleet.models import Instance, InstanceState
from fleet.offers import offers_refresh_all
from gateway import keys, service_proxy
from tests.support import sim_cloud
from tests.support.api import call
from tests.support.billing import billing_mismatches, fund, session_charges
from tests.support.pages import signed_in
from tests.support.personas import Persona

USD = 1_000_000
# reference/002's examples, as printed there ("..." a string, {...} an object whose keys it leaves out).
FLAVOR_EXAMPLE = {
    "flavor_id": "69475e82e81c4dd6be3467e2ca374e0c", "display_name": "NVIDIA_GeForce_RTX_4090", "cluster_id": "1",
    "cluster_flavor_id": "US_01_4090", "meta_info": {"cuda": "12.0", "region": "cn"},
    "billing": {"cny_price_unit": 2.2, "usd_price_unit": 0.3, "nmt_price_unit": 0.147164},
    "created_at": "2024-11-13 09:00:19", "updated_at": "2024-11-13 09:00:19", "deleted_at": None,
    "is_deleted": False, "available_num": 1, "node_max_gpu": 2,
}  # fmt: skip
SERVICE_EXAMPLE = {
    "service_id": "...", "name": "test-flask-server-9", "description": "test", "user_id": "...",
    "status": "initializing", "status_info": None,
    "resource_metadata": {"resource_display_name": "NVIDIA_GeForce_RTX_4090", "scale_type": "manual",
                          "flavor_id": "69475e82e81c4dd6be3467e2ca374e0c", "target_instance_number": 1,
                          "scale_policy": None, "VRAM": "32GB", "image_size": "12GB"},
    "billing_metadata": {}, "endpoint_metadata": {}, "deploy_metadata": {}, "service_type": "normal",
    "created_at": "...", "updated_at": "...", "deleted_at": None, "is_deleted": False, "payment_type": "usd",
}  # fmt: skip
# Keys we answer null where the example has a value, each said in the description: what we cannot know
# (the machines' CUDA version, the image's size) and the currencies we do not bill in.
NULL_BY_DESIGN = {"meta_info.cuda", "billing.cny_price_unit", "billing.nmt_price_unit", "resource_metadata.image_size"}
SERVER = "python3 -m http.server $PORT --bind 127.0.0.1"


def shape_mismatches(example: dict[str, Any], ours: dict[str, Any], where: str = "") -> list[str]:
    """Every key of the example missing from ours, or of another JSON type (null in the example: any)."""
    found = []
    for key, value in example.items():
        place = f"{where}{key}"
        if key not in ours:
            found.append(f"{place} missing")
        elif isinstance(value, dict):
            found += shape_mismatches(value, ours[key], f"{place}.") if isinstance(ours[key], dict) else [place]
        elif value is not None and not (ours[key] is None and place in NULL_BY_DESIGN):
            same = type(ours[key]) is type(value) or {type(ours[key]), type(value)} == {int, float}
            found += [] if same else [f"{place}: {type(ours[key]).__name__}, not {type(value).__name__}"]
    return found


def local_flavor(client: Client, persona: Persona) -> dict[str, Any]:
    listed = call(client, persona, "get", "/inference-service/flavor").json()["flavor_list"]
    return next(f for f in listed if f["cluster_id"] == "local")


def create_body(flavor_id: str, **deploy: Any) -> dict[str, Any]:
    return {
        "name": "web", "description": "a file server", "payment_type": "usd",
        "resource_metadata": {"flavor_id": flavor_id, "scale_type": "manual", "target_instance_number": 1},
        "deploy_metadata": {"image_url": "gpucloud/shell", "command": SERVER, "port": 8080, "gpu_num": 0, **deploy},
    }  # fmt: skip


def test_flavors_are_the_live_on_demand_offers_by_gpu_region_and_tier_under_ids_that_survive_refreshes(
    client: Client, alice: Persona, fleet: str
) -> None:
    answer = call(client, alice, "get", "/inference-service/flavor")
    assert answer.status_code == 200
    listed = answer.json()["flavor_list"]
    offers = [o for o in offers_live() if not o.spot]
    assert len(listed) == len({(base_slug(o.gpu_type, o.gpu_count), o.region, o.tier) for o in offers}) > 0
    for flavor in listed:
        assert shape_mismatches(FLAVOR_EXAMPLE, flavor) == [], flavor
        region, tier = flavor["cluster_id"], flavor["cluster_flavor_id"].rsplit("_", 1)[1]
        gpu = flavor["cluster_flavor_id"].removeprefix(f"{region}_").removesuffix(f"_{tier}")
        mine = [o for o in offers if (base_slug(o.gpu_type, o.gpu_count), o.region, o.tier) == (gpu, region, tier)]
        assert flavor["billing"]["usd_price_unit"] == min(o.price_per_hour_micros // o.gpu_count for o in mine) / USD
        assert flavor["available_num"] == sum(o.available for o in mine)
        assert flavor["node_max_gpu"] == max(o.gpu_count for o in mine)
        assert flavor["meta_info"]["region"] == region and flavor["billing"]["cny_price_unit"] is None
    local = local_flavor(client, alice)
    cpu = GpuType.objects.get(slug=offers_live().get(provider="local", spot=False).gpu_type)
    assert local["display_name"] == cpu.name.replace(" ", "_") and local["deleted_at"] is None

    Offer.objects.all().delete()  # a refresh that makes every row anew: the ids stay
    offers_refresh_all()
    again = call(client, alice, "get", "/inference-service/flavor").json()["flavor_list"]
    assert sorted(f["flavor_id"] for f in again) == sorted(f["flavor_id"] for f in listed)
    assert call(client, Persona(alice.user, alice.org, "gpc_live_wrong"), "get", "/inference-service/flavor"
                ).status_code == 401  # fmt: skip


def test_bad_bodies_are_refused_and_nothing_is_created_a_good_one_initializes_and_shows_as_a_deployment(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    flavor = local_flavor(client, alice)["flavor_id"]
    good = create_body(flavor)
    cases = [
        ({**good, "payment_type": "cny"}, 400, "payment_type"),
        ({**good, "resource_metadata": {**good["resource_metadata"], "scale_type": "auto"}}, 400,
         "resource_metadata.scale_type"),
        ({**good, "resource_metadata": {**good["resource_metadata"], "flavor_id": "0" * 32}}, 404,
         "resource_metadata.flavor_id"),
        ({**good, "resource_metadata": {**good["resource_metadata"], "target_instance_number": 99}}, 400,
         "resource_metadata.target_instance_number"),
        ({**good, "resource_metadata": {**good["resource_metadata"], "target_instance_number": "two"}}, 422,
         "resource_metadata.target_instance_number"),
        (create_body(flavor, image_url="python:3.10-slim"), 400, "deploy_metadata.image_url"),
        (create_body(flavor, gpu_num=4), 400, "deploy_metadata.gpu_num"),
        (create_body(flavor, port=0), 422, "deploy_metadata.port"),
        (create_body(flavor, port="8080"), 422, "deploy_metadata.port"),
        ({k: v for k, v in good.items() if k != "deploy_metadata"}, 422, "deploy_metadata"),
    ]  # fmt: skip
    for body, status, param in cases:
        answer = call(client, alice, "post", "/inference-service", body)
        assert (answer.status_code, answer.json()["error"]["param"]) == (status, param), (body, answer.json())
    refused = call(client, alice, "post", "/inference-service", create_body(flavor, image_url="python:3.10-slim"))
    assert "The local provider has no container runtime" in refused.json()["error"]["message"]
    assert not Deployment.objects.exists() and not Pod.objects.exists() and not CreditHold.objects.exists()
    assert call(client, alice, "get", "/inference-service").json() == []
    assert call(client, alice, "get", "/inference-service/svc_nope").status_code == 404

    with django_capture_on_commit_callbacks() as launches:
        created = call(client, alice, "post", "/inference-service", good)
    assert created.status_code == 201 and created.json()["status"] == "initializing"  # launched after the answer
    service_id = created.json()["service_id"]
    early = call(client, alice, "put", f"/inference-service/{service_id}",
                 {"resource_metadata": {"target_instance_number": 2}})  # fmt: skip
    assert early.status_code == 409 and early.json()["error"]["type"] == "conflict_error"
    assert Deployment.objects.get(pk=service_id).desired_replicas == 1
    with django_capture_on_commit_callbacks(execute=True):  # with what each launch step enqueues in turn
        for launch in launches:
            launch()
    assert call(client, alice, "get", f"/inference-service/{service_id}").json()["status"] == "available"

    # The same endpoint is a deployment of kind container in our own API and pages.
    url = f"http://testserver/services/{service_id}/"
    facts = {"image": "gpucloud/shell", "command": SERVER, "port": 8080, "url": url}
    listed = call(client, alice, "get", "/deployments").json()
    assert [(d["id"], d["kind"], d["endpoint_url"], d["container"]) for d in listed] == [
        (service_id, "container", url, facts)
    ]
    assert call(client, alice, "get", f"/deployments/{service_id}").json()["container"] == facts
    page = signed_in(alice).get("/deployments/").content.decode()
    assert "Container endpoint" in page and "gpucloud/shell" in page and "on port 8080" in page
    detail = signed_in(alice).get(f"/deployments/{service_id}/").content.decode()
    assert url in detail and html.escape(SERVER) in detail
    kind = call(client, alice, "post", "/deployments", {"model_id": "smollm2-135m-instruct", "gpu_type": "cpu",
                                                        "region": "local", "kind": "container"})  # fmt: skip
    assert (kind.status_code, kind.json()["error"]["param"]) == (400, "image")  # a container needs its image
    autoscale = call(client, alice, "patch", f"/deployments/{service_id}/scaling", {"max_replicas": 3})
    assert autoscale.status_code == 409 and "scales manually" in autoscale.json()["error"]["message"]
    assert Deployment.objects.get(pk=service_id).max_replicas == 1

    with django_capture_on_commit_callbacks(execute=True):  # $0 past the grace period: stopped, and kept
        deployments_stop_for_nonpayment(org=alice.org)
    assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.SCALED_TO_ZERO
    assert call(client, alice, "get", f"/inference-service/{service_id}").json()["status"] == "stopped"
    one, capture = {"resource_metadata": {"target_instance_number": 1}}, django_capture_on_commit_callbacks
    for stop in ("nonpayment", "DELETE /deployments/{id}"):
        if stop != "nonpayment":
            call(client, alice, "delete", f"/deployments/{service_id}", capture=capture)
            assert Deployment.objects.get(pk=service_id).status == DeploymentStatus.STOPPED
            assert call(client, alice, "get", f"/inference-service/{service_id}").json()["status"] == "stopped"
        started = call(client, alice, "put", f"/inference-service/{service_id}", one, capture)
        assert started.status_code == 200 and started.json()["status"] == "initializing", (stop, started.json())
        assert call(client, alice, "get", f"/inference-service/{service_id}").json()["status"] == "available", stop


@pytest.mark.django_db(transaction=True)  # the gateway's server thread must see committed rows
def test_a_service_runs_answers_through_the_platform_scales_stops_is_deleted_and_is_billed(
    server: str, client: Client, alice: Persona, bob: Persona, charlie: Persona, fleet: str,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 10 * USD)
    flavor = local_flavor(client, alice)
    created = call(client, alice, "post", "/inference-service", create_body(flavor["flavor_id"]), capture)
    assert created.status_code == 201, created.content
    service = created.json()
    service_id = service["service_id"]
    assert shape_mismatches(SERVICE_EXAMPLE, service) == [], service
    # Launched as the create commits: here (committing at once) before the answer is made.
    assert service["status"] in ("initializing", "available") and service["user_id"] == str(alice.user.pk)
    assert service["resource_metadata"]["flavor_id"] == flavor["flavor_id"]
    assert service["deploy_metadata"] == {"image_url": "gpucloud/shell", "command": SERVER, "port": 8080,
                                          "gpu_num": 1}  # fmt: skip
    url = f"{server}/services/{service_id}/"
    assert service["endpoint_metadata"] == {"url": f"http://testserver/services/{service_id}/", "port": 8080}

    shown = call(client, alice, "get", f"/inference-service/{service_id}").json()
    assert shown["status"] == "available", shown
    assert shape_mismatches(SERVICE_EXAMPLE, shown) == []
    key = {"authorization": f"Bearer {alice.key}"}
    assert answered(url, key).status_code == 200
    listing = httpx.get(f"{url}?x=1", headers=key)
    assert "Directory listing" in listing.text  # http.server's page, its root at the service's prefix
    bare = httpx.get(url)
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
    stranger = httpx.get(url, headers={"authorization": f"Bearer {charlie.key}"})
    assert stranger.status_code == 404
    assert stranger.json()["error"]["message"] == f"No inference service {service_id!r}."
    assert call(client, charlie, "get", f"/inference-service/{service_id}").status_code == 404
    first = Instance.objects.get(deployment_id=service_id)
    assert UsageMeter.objects.get(meter_key=first.pk).service == Service.SERVERLESS

    scaled = call(client, alice, "put", f"/inference-service/{service_id}",
                  {"resource_metadata": {"target_instance_number": "2"}}, capture)  # fmt: skip
    assert scaled.status_code == 200, scaled.content
    assert scaled.json()["resource_metadata"]["target_instance_number"] == 2
    assert call(client, alice, "get", f"/inference-service/{service_id}").json()["status"] == "available"
    assert Instance.objects.filter(deployment_id=service_id, state=InstanceState.READY).count() == 2

    stopped = call(client, alice, "put", f"/inference-service/{service_id}",
                   {"resource_metadata": {"target_instance_number": 0}}, capture)  # fmt: skip
    assert stopped.json()["status"] == "stopped"
    assert not Instance.objects.filter(deployment_id=service_id).exclude(state=InstanceState.TERMINATED).exists()
    machines = Instance.objects.filter(deployment_id=service_id).values("pk")
    assert not UsageMeter.objects.filter(meter_key__in=machines, ended_at=None).exists()  # billing stopped with them
    service_proxy.targets_clear()
    assert httpx.get(url, headers=key).status_code == 503
    assert call(client, alice, "get", "/inference-service").json()[0]["status"] == "stopped"
    again = call(client, alice, "put", f"/inference-service/{service_id}",
                 {"resource_metadata": {"target_instance_number": 1}}, capture)  # fmt: skip
    assert again.status_code == 200 and again.json()["resource_metadata"]["target_instance_number"] == 1
    assert call(client, alice, "get", f"/inference-service/{service_id}").json()["status"] == "available"
    assert answered(url, key).status_code == 200  # started again: a new instance answers
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    keys.cache_clear()
    viewer = httpx.get(url, headers={"authorization": f"Bearer {bob.key}"})
    assert viewer.status_code == 403 and viewer.json()["error"]["type"] == "permission_error"

    deleted = call(client, alice, "delete", f"/inference-service/{service_id}", capture=capture)
    assert deleted.status_code == 200 and deleted.json()["is_deleted"] is True
    assert deleted.json()["deleted_at"] is not None
    assert call(client, alice, "get", f"/inference-service/{service_id}").status_code == 404
    assert call(client, alice, "get", "/inference-service").json() == []
    service_proxy.targets_clear()
    assert httpx.get(url, headers=key).status_code == 404

    charged, gpu_seconds = session_charges(first)
    assert charged > 0 and gpu_seconds >= 60  # the first instance's session, at least its minimum minute
    booked = LedgerTransaction.objects.filter(org=alice.org, kind=TransactionKind.USAGE, service=Service.SERVERLESS)
    assert booked.exists()
    assert billing_mismatches() == [] and ledger_violations() == []


def answered(url: str, headers: dict[str, str]) -> httpx.Response:
    """The service's first answer through the platform, once its server listens."""
    deadline = time.monotonic() + 20
    while True:
        service_proxy.targets_clear()
        answer = httpx.get(url, headers=headers)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_on_a_gpu_cloud_any_image_runs_through_its_driver_as_a_pods_does(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 2}},
                                 community={"h100": 1_200_000}):  # fmt: skip
        listed = call(client, alice, "get", "/inference-service/flavor").json()["flavor_list"]
        by_tier = {f["cluster_flavor_id"]: f for f in listed if f["cluster_id"] == "atl1"}
        community, secure = by_tier["atl1_h100_community"], by_tier["atl1_h100_secure"]
        assert (community["billing"]["usd_price_unit"], secure["billing"]["usd_price_unit"]) == (1.2, 2.0)
        assert community["display_name"] == "NVIDIA_H100" and community["flavor_id"] != secure["flavor_id"]
        command = "pip install flask && python app.py"  # reference/002's example image and command
        body = create_body(community["flavor_id"], image_url="python:3.10-slim", command=command)
        created = call(client, alice, "post", "/inference-service", body, django_capture_on_commit_callbacks)
        assert created.status_code == 201, created.content
        service_id = created.json()["service_id"]
        shown = call(client, alice, "get", f"/inference-service/{service_id}").json()
        assert shown["status"] == "available" and shown["resource_metadata"]["VRAM"] == "80GB"
        assert shown["billing_metadata"]["usd_price_unit"] == 1.2 and shown["deploy_metadata"]["command"] == command
        machine = Instance.objects.get(deployment_id=service_id)
        spec = sim_cloud.LAUNCHED[machine.pk]
        assert (spec.engine, spec.image, spec.command, spec.ports) == (
            "container",
            "python:3.10-slim",
            ["sh", "-c", command],
            [8080],
        )
        assert spec.env["PORT"] == "8080" and spec.env["GPUCLOUD_PROXY_PATH"] == f"/services/{service_id}/"
        assert (spec.gpu_type, spec.region, spec.tier) == ("h100", "atl1", "community")
        assert UsageMeter.objects.get(meter_key=machine.pk).service == Service.SERVERLESS
