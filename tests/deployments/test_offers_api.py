"""Issue 18's marketplace: GET /api/v1/offers lists the live offers of every enabled provider,
filtered, sorted and paged, with each provider's observed reliability on the GPU, and names the
provider only when the operator allows it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Offer, Provider
from deployments.models import Deployment, DeploymentEvent, DeploymentStatus
from fleet.models import Instance, InstanceState
from tests.support.offers import offer
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


@pytest.fixture(autouse=True)
def only_our_offers(catalog: None) -> None:
    """The catalog's GPU types and regions, without the local machine's offers."""
    Offer.objects.all().delete()


def instance(org: Any, provider: str, gpu: str, *, launched: bool, state: str, days_ago: int = 1) -> Instance:
    deployment = Deployment.objects.create(org=org, name="d", status=DeploymentStatus.ACTIVE)
    made = timezone.now() - timedelta(days=days_ago)
    return Instance.objects.create(
        deployment=deployment, provider=provider, gpu_type_id=gpu, state=state, tag="t", api_key="k",
        created_at=made, launched_at=made if launched else None,
    )  # fmt: skip


def listing(client: Client, persona: Persona, **query: Any) -> dict[str, Any]:
    response = client.get("/api/v1/offers", query, **persona.auth)
    assert response.status_code == 200, response.content
    return response.json()


def ids(answer: dict[str, Any]) -> list[str]:
    return [o["id"] for o in answer["data"]]


def test_an_offer_is_shown_with_its_base_gpu_total_vram_prices_and_no_provider_by_default(
    client: Client, alice: Persona
) -> None:
    eight = offer("cloud-a", "h100_8", count=8, price=16.0, tier="community", spot=True, available=3)
    answer = listing(client, alice)
    assert answer["total"] == 1 and answer["limit"] == 50 and answer["offset"] == 0 and not answer["has_more"]
    [shown] = answer["data"]
    assert shown == {
        "id": f"off_{eight.pk}", "gpu_type": "h100", "gpu_count": 8, "vram_gb": 640, "region": "atl1",
        "cloud_type": "community", "spot": True, "price_per_hour_usd": 16.0, "price_per_day_usd": 384.0,
        "available": 3, "reliability": {"launch_success_rate": None, "launches_30d": 0, "preemptions_30d": 0},
        "last_seen_at": shown["last_seen_at"], "provider": None,
    }  # fmt: skip
    assert shown["last_seen_at"].startswith(str(eight.seen_at.date()))


def test_the_operator_may_show_providers(client: Client, alice: Persona, settings: Any) -> None:
    offer("cloud-a")
    settings.GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS = True
    assert [o["provider"] for o in listing(client, alice)["data"]] == ["cloud-a"]


def test_stale_offers_disabled_providers_and_unknown_gpus_are_left_out(client: Client, alice: Persona) -> None:
    live = offer("cloud-a")
    stale = offer("cloud-a", "l40s")
    Offer.objects.filter(pk=stale.pk).update(seen_at=timezone.now() - timedelta(days=1))
    offer("cloud-b")
    Provider.objects.filter(slug="cloud-b").update(enabled=False)
    offer("cloud-a", "quantum-9000")
    assert ids(listing(client, alice)) == [f"off_{live.pk}"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [({"gpu_type": "h100"}, ["h100", "h100_8"]), ({"gpu_type": "mi300x_8"}, ["mi300x_8"]),
     ({"gpu_count": 8}, ["h100_8", "mi300x_8"]), ({"min_vram_gb": 640}, ["h100_8", "mi300x_8"]),
     ({"min_vram_gb": 641}, ["mi300x_8"]), ({"region": "nyc2"}, ["l40s"]), ({"cloud_type": "community"}, ["l40s"]),
     ({"spot": "true"}, ["rtx-4090"]), ({"spot": "false"}, ["l40s", "h100", "h100_8", "mi300x_8"]),
     ({"max_price_per_hour_usd": 2}, ["rtx-4090", "l40s", "h100"]),
     ({"gpu_type": "h100", "max_price_per_hour_usd": 1.99}, [])],
)  # fmt: skip
def test_each_filter_narrows_the_listing(
    client: Client, alice: Persona, query: dict[str, Any], expected: list[str]
) -> None:
    offer("a", "rtx-4090", price=0.3, spot=True)
    offer("a", "l40s", price=1.0, region="nyc2", tier="community")
    offer("a", "h100", price=2.0)
    offer("a", "h100_8", price=16.0, count=8)
    offer("a", "mi300x_8", price=20.0, count=8)
    answer = listing(client, alice, **query)
    assert [Offer.objects.get(pk=o["id"][4:]).gpu_type for o in answer["data"]] == expected
    assert answer["total"] == len(expected)


def test_sorts_by_price_availability_and_reliability(client: Client, alice: Persona) -> None:
    cheap = offer("flaky", price=1.0, available=1)
    dear = offer("solid", price=3.0, available=9)
    middle = offer("unknown", price=2.0, available=5)
    instance(alice.org, "flaky", "h100", launched=True, state=InstanceState.READY)
    instance(alice.org, "flaky", "h100", launched=False, state=InstanceState.FAILED)
    instance(alice.org, "solid", "h100", launched=True, state=InstanceState.READY)
    assert ids(listing(client, alice)) == [f"off_{o.pk}" for o in (cheap, middle, dear)]
    assert ids(listing(client, alice, sort="price")) == [f"off_{o.pk}" for o in (cheap, middle, dear)]
    assert ids(listing(client, alice, sort="availability")) == [f"off_{o.pk}" for o in (dear, middle, cheap)]
    assert ids(listing(client, alice, sort="reliability")) == [f"off_{o.pk}" for o in (dear, cheap, middle)]


def test_reliability_counts_launches_failures_before_launch_and_preemptions_of_that_provider_and_gpu(
    client: Client, alice: Persona, settings: Any
) -> None:
    settings.GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS = True
    offer("cloud-a", "h100")
    offer("cloud-a", "h100_8", count=8, price=16.0)
    offer("cloud-b", "h100", price=3.0)
    for _ in range(3):
        instance(alice.org, "cloud-a", "h100", launched=True, state=InstanceState.READY)
    instance(alice.org, "cloud-a", "h100", launched=False, state=InstanceState.FAILED)
    instance(alice.org, "cloud-a", "h100", launched=True, state=InstanceState.FAILED)  # failed after launch
    instance(alice.org, "cloud-a", "h100", launched=False, state=InstanceState.WAITING_FOR_CAPACITY)
    instance(alice.org, "cloud-a", "h100", launched=False, state=InstanceState.FAILED, days_ago=31)  # too old
    instance(alice.org, "cloud-a", "l40s", launched=False, state=InstanceState.FAILED)  # another GPU
    preempted = instance(alice.org, "cloud-a", "h100", launched=True, state=InstanceState.TERMINATED)
    for reason in ("Preempted: cloud-a took the spot machine back.", "Preempted: cloud-a stopped the spot machine."):
        DeploymentEvent.objects.create(deployment=preempted.deployment, instance=preempted, to_status="terminated",
                                       reason=reason)  # fmt: skip
    DeploymentEvent.objects.create(deployment=preempted.deployment, instance=preempted, to_status="x", reason="Lost")
    instance(alice.org, "cloud-b", "h100", launched=False, state=InstanceState.FAILED)
    answer = listing(client, alice)
    with CaptureQueriesContext(connection) as queries:
        listing(client, alice)
    figures = {(o["provider"], o["gpu_count"]): o["reliability"] for o in answer["data"]}
    a = {"launch_success_rate": 5 / 6, "launches_30d": 5, "preemptions_30d": 1}
    b = {"launch_success_rate": 0.0, "launches_30d": 0, "preemptions_30d": 0}
    assert figures == {("cloud-a", 1): a, ("cloud-a", 8): a, ("cloud-b", 1): b}
    offer("cloud-c", "l40s")
    offer("cloud-d", "a100-80gb")
    instance(alice.org, "cloud-c", "l40s", launched=True, state=InstanceState.READY)
    with CaptureQueriesContext(connection) as more:
        listing(client, alice)
    assert len(more) == len(queries)  # bounded: not one query per offer or provider


def test_paging_with_limit_and_offset(client: Client, alice: Persona) -> None:
    made = [offer(f"p{i}", price=1.0 + i) for i in range(5)]
    page = listing(client, alice, limit=2, offset=2)
    assert ids(page) == [f"off_{o.pk}" for o in made[2:4]]
    assert (page["total"], page["limit"], page["offset"], page["has_more"]) == (5, 2, 2, True)
    last = listing(client, alice, limit=2, offset=4)
    assert ids(last) == [f"off_{made[4].pk}"] and not last["has_more"]
    assert listing(client, alice, offset=9)["data"] == []


@pytest.mark.parametrize(
    ("query", "status", "param"),
    [({"gpu_type": "nope"}, 404, "gpu_type"), ({"region": "mars1"}, 404, "region"),
     ({"cloud_type": "any"}, 400, "cloud_type"), ({"sort": "cheapest"}, 400, "sort"),
     ({"gpu_count": 3}, 400, "gpu_count"), ({"gpu_count": "x"}, 422, "gpu_count"),
     ({"min_vram_gb": -1}, 422, "min_vram_gb"), ({"spot": "maybe"}, 422, "spot"),
     ({"max_price_per_hour_usd": 0}, 422, "max_price_per_hour_usd"),
     ({"max_price_per_hour_usd": "inf"}, 422, "max_price_per_hour_usd"),
     ({"limit": 0}, 422, "limit"), ({"limit": 201}, 422, "limit"), ({"offset": -1}, 422, "offset"),
     ({"gpu_type": "h\x00"}, 422, "gpu_type")],
)  # fmt: skip
def test_bad_parameters_are_refused_naming_the_parameter(
    client: Client, alice: Persona, query: dict[str, Any], status: int, param: str
) -> None:
    offer("cloud-a")
    response = client.get("/api/v1/offers", query, **alice.auth)
    assert response.status_code == status, response.content
    assert response.json()["error"]["param"] == param


def test_a_price_ceiling_beyond_any_column_lists_everything(client: Client, alice: Persona) -> None:
    offer("cloud-a")
    assert listing(client, alice, max_price_per_hour_usd=1e300)["total"] == 1


def test_offers_need_a_key_and_are_the_same_for_every_org(client: Client, alice: Persona, charlie: Persona) -> None:
    offer("cloud-a")
    assert client.get("/api/v1/offers").status_code == 401
    assert listing(client, alice)["data"] == listing(client, charlie)["data"]
