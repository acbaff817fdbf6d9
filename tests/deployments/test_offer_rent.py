"""Issue 18: POST /api/v1/offers/{id}/rent makes a pod or a model deployment on one marketplace offer
(its provider pinned), echoes the billing mode and the ceiling, falls over to the next-cheapest matching
offer within the ceiling when the asked one is gone or full, and refuses with 409 naming what it tried
when none is left. Every refusal writes nothing and charges nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.roles import Role
from billing.models import CreditHold, Service, UsageMeter
from billing.selectors import balance_of
from catalog.models import Offer, Provider, WithdrawnOffer
from deployments.models import Deployment
from fleet.models import Instance, InstanceState
from fleet.offers import offers_refresh
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.offers import offer
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000
SLEEPER = {"image": "gpucloud/shell", "command": ["python3", "-c", "import time; time.sleep(600)"]}
CLOUD_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"


def rent(client: Client, persona: Persona, offer_id: str, body: Any, capture: Any = None) -> Any:
    def send() -> Any:
        return client.post(
            f"/api/v1/offers/{offer_id}/rent", data=json.dumps(body), content_type="application/json", **persona.auth
        )

    if capture is None:
        return send()
    with capture(execute=True):
        return send()


def oid(offer: Offer) -> str:
    return f"off_{offer.pk}"


def nothing_written(persona: Persona, balance: int) -> None:
    assert not Deployment.objects.filter(org=persona.org).exists()
    assert not Instance.objects.exists() and not CreditHold.objects.filter(org=persona.org).exists()
    assert balance_of(persona.org).available_micros == balance


def test_a_pod_rented_on_the_local_offer_runs_there_and_bills_like_any_pod(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    local = Offer.objects.get(provider="local", gpu_type="cpu")
    # A cheaper offer of the same terms elsewhere: an unpinned launch would try it first (and fail there).
    offer("decoy", "cpu", region="local", price=0.01, available=5, tier=local.tier)
    answer = rent(client, alice, oid(local), {"pod": {**SLEEPER, "name": "rented"}}, django_capture_on_commit_callbacks)
    assert answer.status_code == 201, answer.content
    body = answer.json()
    pod_id = body["id"]
    assert pod_id.startswith("pod_")
    price = local.price_per_hour_micros / USD
    assert {k: body[k] for k in ("kind", "url", "offer_id", "requested_offer_id", "tried", "billing")} == {
        "kind": "pod", "url": f"http://testserver/api/v1/pods/{pod_id}", "offer_id": oid(local),
        "requested_offer_id": oid(local), "tried": [], "billing": "on_demand",
    }  # fmt: skip
    assert body["price_per_hour_usd"] == price and body["max_price_per_hour_usd"] == price  # the offer's own
    assert body["deployment"] is None and body["pod"]["id"] == pod_id and body["pod"]["name"] == "rented"

    shown = client.get(f"/api/v1/pods/{pod_id}", **alice.auth).json()
    assert shown["status"] == "running", shown
    assert shown["machine"]["provider"] == "local" and shown["machine"]["state"] == "ready"
    assert shown["machine"]["hourly_price_usd"] == price and shown["spot"] is False
    assert Deployment.objects.get(pk=pod_id).provider == "local"
    meter = UsageMeter.objects.get(meter_key=shown["machine"]["id"])
    assert meter.service == Service.POD and meter.org_id == alice.org.pk

    stopped = client.post(f"/api/v1/pods/{pod_id}/stop", **alice.auth)
    assert stopped.status_code == 200


def test_a_model_rented_on_a_cloud_offer_is_a_deployment_that_becomes_active(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 1}}):
        sim = Offer.objects.get(provider="sim")
        answer = rent(
            client, alice, oid(sim), {"model": {"model_id": "smollm2-135m-instruct", "name": "chat"}},
            django_capture_on_commit_callbacks,
        )  # fmt: skip
        assert answer.status_code == 201, answer.content
        body = answer.json()
        assert body["kind"] == "model" and body["pod"] is None and body["offer_id"] == oid(sim)
        assert body["url"] == f"http://testserver/api/v1/deployments/{body['id']}"
        assert body["deployment"]["model_id"] == "smollm2-135m-instruct" and body["deployment"]["name"] == "chat"
        deployment = Deployment.objects.get(pk=body["id"])
        assert (deployment.provider, deployment.region_id, deployment.gpu_type_id) == ("sim", "atl1", "h100")
        assert deployment.hourly_price_micros == 2 * USD and deployment.cloud_type == sim.tier
        shown = client.get(body["url"], **alice.auth).json()
        assert shown["status"] == "active", shown
        [machine] = Instance.objects.filter(deployment=deployment)
        assert machine.provider == "sim" and machine.state == InstanceState.READY
        assert UsageMeter.objects.get(meter_key=machine.pk).service == Service.MODEL


def test_a_full_offer_falls_over_to_another_provider_within_the_ceiling_and_runs_there(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The sim cloud is full in atl1; a second sim cloud sells the same GPU dearer in nyc2: the pod runs there."""
    fund(alice.org, 20 * USD)
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 0}}) as tag:
        Provider.objects.create(
            slug="sim2", name="Second sim", driver=sim_cloud.DRIVER,
            config={"tag": tag, "region": "nyc2", "gpus": {"h100": {"price": 2_500_000, "capacity": 1}}},
        )  # fmt: skip
        sim_cloud.offers_refresh(Provider.objects.get(slug="sim2"))
        full, dearer = Offer.objects.get(provider="sim"), Offer.objects.get(provider="sim2")
        too_dear = offer("pricey", price=2.9)  # matches, but over the ceiling
        body = {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": 2.6}
        answer = rent(client, alice, oid(full), body, django_capture_on_commit_callbacks)
        assert answer.status_code == 201, answer.content
        got = answer.json()
        assert (got["offer_id"], got["requested_offer_id"]) == (oid(dearer), oid(full))
        assert got["tried"] == [{"offer_id": oid(full), "reason": "out of capacity"}]
        assert got["price_per_hour_usd"] == 2.5 and got["max_price_per_hour_usd"] == 2.6
        shown = client.get(got["url"], **alice.auth).json()
        assert shown["status"] == "running" and shown["region"] == "nyc2"
        assert shown["machine"]["provider"] == "sim2" and shown["machine"]["hourly_price_usd"] == 2.5
        assert not Instance.objects.filter(provider=too_dear.provider_id).exists()


def test_a_rented_offer_launches_on_its_provider_even_with_a_cheaper_one_beside_it(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 1}}) as tag:
        Provider.objects.create(
            slug="sim2", name="Second sim", driver=sim_cloud.DRIVER,
            config={"tag": tag, "region": "atl1", "gpus": {"h100": {"price": 3_000_000, "capacity": 1}}},
        )  # fmt: skip
        sim_cloud.offers_refresh(Provider.objects.get(slug="sim2"))
        chosen = Offer.objects.get(provider="sim2")
        answer = rent(client, alice, oid(chosen), {"pod": {"image": CLOUD_IMAGE}}, django_capture_on_commit_callbacks)
        assert answer.status_code == 201, answer.content
        shown = client.get(answer.json()["url"], **alice.auth).json()
        assert shown["machine"]["provider"] == "sim2" and shown["machine"]["hourly_price_usd"] == 3.0


def test_a_gone_offer_falls_over_to_the_next_cheapest_match_in_any_region(
    client: Client, alice: Persona, catalog: None, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    gone = offer("cloud-a", price=1.5, age=timedelta(days=1))  # stored, no longer listed: its terms are known
    offer("cloud-b", price=1.0, spot=True)  # another kind
    offer("cloud-b", price=1.0, tier="community")  # another tier
    offer("cloud-b", price=1.0, count=2, gpu_type="h100_2")  # another count
    offer("cloud-c", price=1.9, region="tor1", available=0)  # full
    next_cheapest = offer("cloud-d", price=1.8, region="ric1", available=2)
    offer("cloud-e", price=1.8, region="nyc2", available=1)  # as cheap, less available: after
    body = {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": 2}
    answer = rent(client, alice, oid(gone), body, django_capture_on_commit_callbacks)
    assert answer.status_code == 201, answer.content
    got = answer.json()
    assert got["offer_id"] == oid(next_cheapest) and got["tried"] == [
        {"offer_id": oid(gone), "reason": "gone: its provider no longer lists it"}
    ]
    deployment = Deployment.objects.get(pk=got["id"])
    assert (deployment.provider, deployment.region_id, deployment.hourly_price_micros) == ("cloud-d", "ric1", 1_800_000)
    assert len(tasks["provision"]) == 1  # one machine, launched after the answer
    hold = CreditHold.objects.get(org=alice.org)
    assert hold.amount_micros == 30_000  # its first minute at $1.80/h


def test_nothing_within_the_ceiling_is_a_409_naming_each_offer_tried_and_nothing_is_written(
    client: Client, alice: Persona, catalog: None, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    full = offer("cloud-a", price=1.5, available=0)
    dear = offer("cloud-b", price=2.5, region="nyc2")
    body = {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": 2}
    answer = rent(client, alice, oid(full), body, django_capture_on_commit_callbacks)
    assert answer.status_code == 409
    assert answer.json()["error"] == {
        "type": "no_capacity",
        "message": f"No offer like {oid(full)} (1x h100 on-demand secure, any provider or region) at $2.00/h or less "
        f"can take it now; nothing was created. Tried: {oid(full)}: out of capacity; "
        f"{oid(dear)}: $2.50/h is over the ceiling of $2.00/h.",
    }
    nothing_written(alice, 10 * USD)
    assert tasks["provision"] == []
    # Without a ceiling, the asked offer's own price is the ceiling: the dearer one is no fallover either.
    assert rent(client, alice, oid(full), {"pod": {"image": CLOUD_IMAGE}}).status_code == 409
    nothing_written(alice, 10 * USD)


@pytest.mark.parametrize(
    ("spot", "billing", "pod_ceiling"), [(True, "spot", 3.0), (False, "on_demand", None)], ids=["spot", "on-demand"]
)
def test_the_answer_echoes_spot_or_on_demand_and_the_ceiling(
    client: Client, alice: Persona, catalog: None, tasks: dict[str, list[str]], spot: bool, billing: str,
    pod_ceiling: float | None,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    chosen = offer("cloud-a", price=2.0, spot=spot)
    answer = rent(client, alice, oid(chosen), {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": 3})
    assert answer.status_code == 201, answer.content
    got = answer.json()
    assert (got["billing"], got["max_price_per_hour_usd"], got["price_per_hour_usd"]) == (billing, 3.0, 2.0)
    assert got["pod"]["spot"] is spot and got["pod"]["max_price_per_hour_usd"] == pod_ceiling


@pytest.mark.parametrize(
    ("path_id", "body", "status", "param"),
    [
        ("off_{pk}", {}, 400, "pod"),
        ("off_{pk}", {"pod": {"image": CLOUD_IMAGE}, "model": {"model_id": "smollm2-135m-instruct"}}, 400, "pod"),
        ("off_{pk}", {"pod": None, "model": None}, 400, "pod"),
        ("off_{pk}", {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": 0}, 422, "max_price_per_hour_usd"),
        ("off_{pk}", {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": -1}, 422, "max_price_per_hour_usd"),
        ("off_{pk}", {"pod": {}}, 400, "image"),
        ("off_{pk}", {"pod": {"image": "Not An Image"}}, 400, "image"),
        ("off_{pk}", {"pod": {"image": CLOUD_IMAGE, "ports": ["80/udp"]}}, 400, "ports"),
        ("off_{pk}", {"pod": {"template": "nope"}}, 404, "pod.template"),
        ("off_{pk}", {"model": {"model_id": "nope"}}, 404, "model.model_id"),
        ("off_{pk}", {"model": {}}, 422, "model.model_id"),
        ("off_{pk}", [], 422, None),
        ("offer-1", {"pod": {"image": CLOUD_IMAGE}}, 404, None),
        ("off_0", {"pod": {"image": CLOUD_IMAGE}}, 404, None),
        ("off_999999999", {"pod": {"image": CLOUD_IMAGE}}, 404, None),
    ],
    ids=[
        "empty",
        "both",
        "both-null",
        "ceiling-0",
        "ceiling-negative",
        "no-image",
        "bad-image",
        "bad-port",
        "unknown-template",
        "unknown-model",
        "model-without-id",
        "not-an-object",
        "malformed-id",
        "id-0",
        "never-existed",
    ],
)
def test_bad_requests_are_refused_and_nothing_is_written(
    client: Client, alice: Persona, catalog: None, tasks: dict[str, list[str]], path_id: str, body: Any, status: int,
    param: str | None, django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    chosen = offer("cloud-a")
    answer = rent(client, alice, path_id.format(pk=chosen.pk), body, django_capture_on_commit_callbacks)
    assert answer.status_code == status, answer.content
    assert answer.json()["error"].get("param") == param
    nothing_written(alice, 10 * USD)
    assert tasks["provision"] == []


def withdraw_offers_of(slug: str) -> None:
    """What a refresh does to offers a provider stops listing (here: all of them, as it is disabled)."""
    provider = Provider.objects.get(slug=slug)
    provider.enabled = False
    provider.save(update_fields=["enabled"])
    offers_refresh(provider)


def test_an_offer_its_provider_stopped_listing_still_rents_by_falling_over(
    client: Client, alice: Persona, catalog: None, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    """The id a client listed vanished before its rent: its terms were kept, so it falls over."""
    fund(alice.org, 10 * USD)
    chosen = offer("cloud-a", price=1.5)
    like = offer("cloud-b", price=1.8, region="ric1")
    withdraw_offers_of("cloud-a")
    assert not Offer.objects.filter(pk=chosen.pk).exists()
    answer = rent(client, alice, oid(chosen), {"pod": {"image": CLOUD_IMAGE}, "max_price_per_hour_usd": 2},
                  django_capture_on_commit_callbacks)  # fmt: skip
    assert answer.status_code == 201, answer.content
    got = answer.json()
    assert (got["requested_offer_id"], got["offer_id"]) == (oid(chosen), oid(like))
    assert got["tried"] == [{"offer_id": oid(chosen), "reason": "gone: its provider no longer lists it"}]
    assert got["max_price_per_hour_usd"] == 2 and got["billing"] == "on_demand"
    assert Deployment.objects.get(pk=got["id"]).provider == "cloud-b"


def test_an_offer_withdrawn_over_a_day_ago_answers_404_saying_to_list_offers_again(
    client: Client, alice: Persona, catalog: None
) -> None:
    fund(alice.org, 10 * USD)
    chosen = offer("cloud-a")
    offer("cloud-b", price=1.8, region="ric1")
    withdraw_offers_of("cloud-a")
    WithdrawnOffer.objects.update(withdrawn_at=timezone.now() - timedelta(days=1, seconds=1))
    answer = rent(client, alice, oid(chosen), {"pod": {"image": CLOUD_IMAGE}})
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == (
        f"No offer '{oid(chosen)}': it is gone or never was; list offers again (GET /api/v1/offers)."
    )
    nothing_written(alice, 10 * USD)


def test_an_unfunded_org_gets_402_as_a_create_does_and_a_viewer_403(
    client: Client, alice: Persona, bob: Persona, catalog: None, tasks: dict[str, list[str]]
) -> None:
    chosen = offer("cloud-a")
    answer = rent(client, alice, oid(chosen), {"pod": {"image": CLOUD_IMAGE}})
    assert answer.status_code == 402, answer.content
    model = rent(client, alice, oid(chosen), {"model": {"model_id": "smollm2-135m-instruct"}})
    assert model.status_code == 402
    nothing_written(alice, 0)
    fund(alice.org, 10 * USD)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert rent(client, bob, oid(chosen), {"pod": {"image": CLOUD_IMAGE}}).status_code == 403
    nothing_written(alice, 10 * USD)
