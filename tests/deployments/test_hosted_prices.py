"""Issue 14 §3: the cost comparison compares like with like: hosted open-weights models, each price
with its source and date; every chat model of the catalog has a comparison or says why not."""

from __future__ import annotations

import re

import pytest

from catalog.models import CatalogModel, ModelCategory
from pages.deployments.hosted_prices import COMPARABLE, HOSTED_PRICES, hosted_prices_for

CLOSED_MODELS = ("gpt", "claude", "gemini", "opus")


def test_every_hosted_price_names_an_open_model_its_source_and_date() -> None:
    for price in HOSTED_PRICES:
        assert not any(word in price.model.lower() for word in CLOSED_MODELS), price
        assert price.source.startswith("https://") and re.fullmatch(r"[A-Z][a-z]+ 20\d\d", price.as_of), price
        assert 0 < price.input_per_million_micros <= price.output_per_million_micros < 5_000_000, price
    assert {p.compares_to for p in HOSTED_PRICES} == {group for group, _ in COMPARABLE.values()}


@pytest.mark.django_db
def test_each_catalog_chat_model_compares_with_the_same_model_or_says_why(catalog: None) -> None:
    for model in CatalogModel.objects.filter(category=ModelCategory.LLM):
        rows, note = hosted_prices_for(model.slug)
        assert rows, model.slug
        same_size = model.parameters.lower() in rows[0].model.lower().replace(" ", "")
        assert same_size or note, model.slug  # a different model is always said so
    assert hosted_prices_for("whisper-large-v3") == ([], "") and hosted_prices_for(None) == ([], "")
    llama_70b, _ = hosted_prices_for("llama-3.3-70b-instruct")
    assert [(p.provider, p.input_per_million_micros) for p in llama_70b] == [
        ("Groq", 590_000), ("Together AI", 880_000), ("Fireworks AI", 900_000),
    ]  # fmt: skip
