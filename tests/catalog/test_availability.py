"""Issue 14 §3: the catalog, a model's page and the dashboard's Quick deploy say where each model can
run now, read from the stored offers (catalog.Offer), and offer Deploy only where it can."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from catalog.models import CatalogModel, Offer, OfferTier, Provider
from fleet import drivers
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_driver_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages read the offer table: any driver built while they render fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a page asked a provider driver")

    monkeypatch.setattr(drivers, "driver", refuse)


def add_gpu_offer(*, gpu_type: str = "l40s", region: str = "tor1", price: int = 1_230_000) -> None:
    provider = Provider.objects.create(slug="cloud", name="A GPU cloud", driver="runpod")
    Offer.objects.create(
        provider=provider, gpu_type=gpu_type, region=region, tier=OfferTier.SECURE, spot=False,
        price_per_hour_micros=price, cost_per_hour_micros=price // 2, available=3, seen_at=timezone.now(),
    )  # fmt: skip


def deploy_links(page: str) -> set[str]:
    return set(re.findall(r'href="/catalog/([^/"]+)/#deploy-h" aria-label="Deploy', page))


def test_with_only_this_machine_only_cpu_models_offer_deploy(
    alice: Persona, catalog: None, no_driver_calls: None
) -> None:
    page = signed_in(alice).get("/catalog/").content.decode()
    cpu_models = set(CatalogModel.objects.filter(min_vram_gb=0).values_list("slug", flat=True))
    assert cpu_models == {"smollm2-135m-instruct", "smollm2-135m-embedding"}
    assert deploy_links(page) == cpu_models
    assert page.count("Runs now on</span> CPU (this machine) · <strong>from $0.05/hr</strong>") == 2
    gpu_models = CatalogModel.objects.count() - 2
    assert page.count("the operator connects one in the admin.") == gpu_models
    assert "needs a GPU provider with 24 GB of GPU memory" in page  # Llama 3.1 8B


def test_a_stored_gpu_offer_makes_the_models_that_fit_deployable(
    alice: Persona, catalog: None, no_driver_calls: None
) -> None:
    add_gpu_offer(gpu_type="l40s", price=1_230_000)  # 48 GB: fits every model needing up to 48 GB
    page = signed_in(alice).get("/catalog/").content.decode()
    fits = set(CatalogModel.objects.filter(min_vram_gb__lte=48).values_list("slug", flat=True))
    assert deploy_links(page) == fits and "llama-3.3-70b-instruct" not in fits
    assert "Runs now on</span> NVIDIA L40S · <strong>from $1.23/hr</strong>" in page
    assert "Runs now on</span> CPU (this machine), NVIDIA L40S · <strong>from $0.05/hr</strong>" in page
    model_page = signed_in(alice).get("/catalog/llama-3.1-8b-instruct/").content.decode()
    assert 'action="/catalog/llama-3.1-8b-instruct/deploy"' in model_page and 'value="l40s@tor1" checked' in model_page


def test_a_stale_or_disabled_offer_does_not_count(alice: Persona, catalog: None, settings: object) -> None:
    add_gpu_offer()
    Provider.objects.filter(slug="cloud").update(enabled=False)
    page = signed_in(alice).get("/catalog/llama-3.1-8b-instruct/").content.decode()
    assert "Nothing can run this model here yet" in page and "$1.23" not in page


def test_quick_deploy_puts_what_runs_first_and_offers_deploy_only_there(
    alice: Persona, catalog: None, no_driver_calls: None
) -> None:
    page = signed_in(alice).get("/dashboard/").content.decode()
    quick = page[page.index('id="quick-h"') : page.index('id="activity-h"')]
    assert re.findall(r">Deploy ([^<]+)</a>", quick) == ["SmolLM2 135M Instruct", "SmolLM2 135M embeddings"]
    assert "CPU (this machine) · from $0.05/hr" in quick
    assert quick.count("Needs a GPU provider: the operator connects one in the admin") == 2
