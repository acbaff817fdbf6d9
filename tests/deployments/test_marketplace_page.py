"""Issue 18's Marketplace page: the live offers with GET /offers's filters and sorts, the table swapped
in place by HTMX, prices per hour and per day, providers only when the operator shows them, and a Rent
per row: the pod form prefilled with the offer (which then rents it) or a model deployment on it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership
from accounts.roles import Role
from catalog.models import Offer
from deployments.models import Deployment
from tests.support.billing import fund
from tests.support.offers import offer
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


@pytest.fixture(autouse=True)
def only_our_offers(catalog: None) -> None:
    Offer.objects.all().delete()


def row_ids(page: str) -> list[str]:
    return re.findall(r'<tr id="(off_\d+)">', page)


def test_the_page_lists_every_live_offer_cheapest_first_with_prices_per_hour_and_day(alice: Persona) -> None:
    dear = offer("cloud-a", price=3.0, region="nyc2", available=0)
    cheap = offer("cloud-b", "h100_8", count=8, price=16.0 / 8, spot=True, tier="community", available=3)
    page = signed_in(alice).get("/marketplace/").content.decode()
    assert row_ids(page) == [f"off_{cheap.pk}", f"off_{dear.pk}"]  # $2.00 before $3.00
    assert "8\u00d7 NVIDIA H100" in page and "640 GB VRAM" in page and "Spot" in page and "Community" in page
    assert "$2.00</td>" in page and "$48.00</td>" in page  # per hour, per day
    assert "$3.00</td>" in page and "$72.00</td>" in page and '<span class="muted">full</span>' in page
    assert "none observed" in page
    assert "cloud-a cloud" not in page and ">Provider</th>" not in page  # the operator shows no providers
    assert 'href="/marketplace/" aria-current="page">Marketplace</a>' in page


def test_providers_are_named_when_the_operator_shows_them(alice: Persona, settings: Any) -> None:
    offer("cloud-a")
    settings.GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS = True
    page = signed_in(alice).get("/marketplace/").content.decode()
    assert ">Provider</th>" in page and ">cloud-a cloud</td>" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"gpu_type": "h100"}, ["h100", "h100x8"]),
        ({"gpu_type": "h100", "gpu_count": "8"}, ["h100x8"]),
        ({"min_vram_gb": "100"}, ["h100x8"]),
        ({"region": "nyc2"}, ["l40s-nyc"]),
        ({"cloud_type": "community"}, ["l40s-nyc"]),
        ({"spot": "true"}, ["h100x8"]),
        ({"spot": "false"}, ["l40s-nyc", "h100"]),
        ({"max_price_per_hour_usd": "1.5"}, ["l40s-nyc"]),
        ({"sort": "availability"}, ["h100x8", "l40s-nyc", "h100"]),
        ({}, ["l40s-nyc", "h100", "h100x8"]),
    ],
    ids=["gpu", "gpu-count", "vram", "region", "tier", "spot", "on-demand", "price", "sort", "none"],
)
def test_filters_narrow_the_rows(alice: Persona, query: dict[str, str], expected: list[str]) -> None:
    made = {
        "h100": offer("cloud-a", price=2.0),
        "h100x8": offer("cloud-a", "h100_8", count=8, price=16.0, spot=True, available=4),
        "l40s-nyc": offer("cloud-b", "l40s", price=1.0, region="nyc2", tier="community", available=2),
    }
    page = signed_in(alice).get("/marketplace/", query).content.decode()
    assert row_ids(page) == [f"off_{made[name].pk}" for name in expected]


def test_an_htmx_request_gets_only_the_table(alice: Persona) -> None:
    shown = offer("cloud-a", region="nyc2")
    offer("cloud-a", region="atl1")
    answer = signed_in(alice).get("/marketplace/", {"region": "nyc2"}, HTTP_HX_REQUEST="true")
    page = answer.content.decode()
    assert answer.status_code == 200 and page.lstrip().startswith('<div id="offers"')
    assert "<html" not in page and '<form class="filters' not in page
    assert row_ids(page) == [f"off_{shown.pk}"]


def test_a_filter_the_catalog_does_not_know_is_said_and_lists_nothing(alice: Persona) -> None:
    offer("cloud-a")
    page = signed_in(alice).get("/marketplace/", {"gpu_type": "tpu"}).content.decode()
    assert "No GPU type &#x27;tpu&#x27;" in page and row_ids(page) == []
    page = signed_in(alice).get("/marketplace/", {"gpu_count": "two"}).content.decode()
    assert "gpu count must be a whole number" in page and row_ids(page) == []


def test_the_rent_link_opens_the_pod_form_prefilled_with_the_offer(alice: Persona) -> None:
    spot = offer("cloud-a", "h100_2", count=2, price=4.0, region="nyc2", tier="community", spot=True)
    client = signed_in(alice)
    page = client.get("/marketplace/").content.decode()
    link = (f"/pods/new?offer=off_{spot.pk}&amp;gpu_type=h100&amp;gpu_count=2&amp;region=nyc2"
            "&amp;cloud_type=community&amp;spot=on")  # fmt: skip
    assert f'href="{link}"' in page
    form = client.get(link.replace("&amp;", "&")).content.decode()
    assert f'<input type="hidden" name="offer" value="off_{spot.pk}">' in form
    assert f'Renting marketplace offer <span class="mono">off_{spot.pk}</span>: 2\u00d7 h100 in nyc2' in form
    assert '<option value="h100" selected>' in form and '<option value="nyc2" selected>' in form
    assert 'id="pod-count-2" name="gpu_count" value="2" checked' in form
    assert 'id="pod-tier-community" name="cloud_type" value="community" checked' in form
    assert 'id="pod-spot" name="spot" checked' in form


def test_the_prefilled_pod_form_rents_the_offer_or_its_fallover(
    alice: Persona, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    full = offer("cloud-a", price=2.0, available=0)
    other = offer("cloud-b", price=1.9, region="nyc2")
    form = {"offer": f"off_{full.pk}", "gpu_type": "h100", "gpu_count": "1", "region": "atl1",
            "cloud_type": "secure", "image": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
            "container_disk_gb": "20", "storage": "none"}  # fmt: skip
    client = signed_in(alice)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/pods/create", form)
    pod = Deployment.objects.get(org=alice.org)
    assert answer.status_code == 302 and answer["Location"] == f"/pods/{pod.pk}/"
    assert (pod.provider, pod.region_id, pod.hourly_price_micros) == ("cloud-b", "nyc2", 1_900_000)
    assert tasks["provision"] == [pod.instances.get().pk]
    page = client.get(answer["Location"]).content.decode()
    assert (
        f"on off_{other.pk} at $1.90/h (on-demand), in place of off_{full.pk} (off_{full.pk}: out of capacity)" in page
    )


def test_a_pod_form_rent_with_a_volume_is_refused_beside_storage_and_nothing_is_made(alice: Persona) -> None:
    fund(alice.org, 10 * USD)
    chosen = offer("cloud-a")
    form = {"offer": f"off_{chosen.pk}", "gpu_type": "h100", "gpu_count": "1", "region": "atl1", "cloud_type": "any",
            "image": "gpucloud/shell", "container_disk_gb": "20", "storage": "new", "volume_size": "10"}  # fmt: skip
    answer = signed_in(alice).post("/pods/create", form)
    assert answer.status_code == 400
    assert 'id="storage-error" role="alert">A rented pod runs on its container disk only' in answer.content.decode()
    assert not Deployment.objects.exists()


def test_a_row_rents_a_model_deployment_on_its_offer(
    alice: Persona, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    chosen = offer("cloud-a", "l40s", price=1.0)
    client = signed_in(alice)
    page = client.get("/marketplace/").content.decode()
    assert '<option value="smollm2-135m-instruct">' in page and 'action="/marketplace/rent-model"' in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/marketplace/rent-model", {"offer": f"off_{chosen.pk}",
                                                         "model_id": "smollm2-135m-instruct"})  # fmt: skip
    deployment = Deployment.objects.get(org=alice.org)
    assert answer.status_code == 302 and answer["Location"] == f"/deployments/{deployment.pk}/"
    assert (deployment.provider, deployment.gpu_type_id, deployment.model_id) == (
        "cloud-a",
        "l40s",
        "smollm2-135m-instruct",
    )
    assert tasks["provision"] == [deployment.instances.get().pk]
    refused = client.post("/marketplace/rent-model", {"offer": "off_0", "model_id": "smollm2-135m-instruct"},
                          follow=True)  # fmt: skip
    assert "it is gone or never was; list offers again" in refused.content.decode()
    assert Deployment.objects.count() == 1


def test_a_viewer_sees_offers_without_rent_buttons(alice: Persona, bob: Persona) -> None:
    offer("cloud-a")
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    page = signed_in(bob).get("/marketplace/").content.decode()
    assert len(row_ids(page)) == 1 and ">Rent</summary>" not in page


def test_a_signed_out_visitor_is_sent_to_sign_in(client: Client) -> None:
    answer = client.get("/marketplace/?gpu_type=h100")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/?next=/marketplace/")
    posted = client.post("/marketplace/rent-model", {"offer": "off_1", "model_id": "x"})
    assert posted.status_code == 302 and posted["Location"].startswith("/accounts/login/")
