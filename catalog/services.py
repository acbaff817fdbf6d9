"""Writes of catalog data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from catalog import data
from catalog.models import CatalogModel, GpuType, Preset, Provider, Region
from gpucloud.core.sealed import seal, unseal


@dataclass(frozen=True)
class LoadResult:
    created: int
    updated: int


def _micros(usd: float) -> int:
    return round(usd * data.USD)


def catalog_load() -> LoadResult:
    """Write the built-in catalog; running it again changes nothing that is already current."""
    created = updated = 0

    def upsert(model: type, slug: str, fields: dict[str, object]) -> None:
        nonlocal created, updated
        _, was_created = model.objects.update_or_create(slug=slug, defaults=fields)  # type: ignore[attr-defined]
        created += was_created
        updated += not was_created

    with transaction.atomic():
        for order, gpu in enumerate(data.GPU_TYPES):
            upsert(GpuType, gpu["slug"], {
                "name": gpu["name"], "vendor": gpu["vendor"], "gpu_count": gpu.get("gpu_count", 1),
                "vram_gb": gpu["vram_gb"], "hourly_price_micros": _micros(gpu["price"]), "sort_order": order,
            })  # fmt: skip
        for region in data.REGIONS:
            upsert(Region, region["slug"], {"name": region["name"]})
        for order, item in enumerate(data.MODELS):
            fields = {k: v for k, v in item.items() if k not in ("slug", "gpu", "price")}
            fields.update(default_gpu_type_id=item["gpu"], hourly_price_micros=_micros(item["price"]), sort_order=order)
            upsert(CatalogModel, item["slug"], fields)
        # The local provider is on by default; an operator's edits to it (enabled, config) are kept.
        _, was_created = Provider.objects.get_or_create(
            slug="local", defaults={"name": "This machine", "driver": "local", "config": {}}
        )
        created += was_created
        for preset in data.PRESETS:
            upsert(Preset, preset["slug"], {
                "name": preset["name"], "gpu_type_id": preset["gpu"],
                "engine_config": preset["engine_config"], "best_for": preset["best_for"],
            })  # fmt: skip
    return LoadResult(created=created, updated=updated)


# --- providers ------------------------------------------------------------------------------------


def provider_save(
    *,
    slug: str,
    enabled: bool,
    name: str | None = None,
    driver: str | None = None,
    config: dict[str, Any] | None = None,
    api_key: str = "",
) -> tuple[Provider, bool]:
    """Create the provider `slug` or update it: the fields given (None keeps the stored value),
    `enabled`, and the API key sealed (blank keeps the stored one). Returns it and whether it was
    created. The caller checks the driver's name first: the driver registry is the fleet's, above
    the catalog. ValidationError for a slug, name or driver the model refuses (nothing is written)."""
    with transaction.atomic():
        provider = Provider.objects.select_for_update().filter(slug=slug).first()
        created = provider is None
        provider = provider or Provider(slug=slug, name=slug)
        for field, value in (("name", name), ("driver", driver), ("config", config)):
            if value is not None:
                setattr(provider, field, value)
        provider.enabled = enabled
        provider.full_clean(exclude=["credentials"])
        provider.save()
        provider_credentials_set(provider, {"api_key": api_key})
    return provider, created


# --- provider credentials -------------------------------------------------------------------------


def provider_credentials_set(provider: Provider, values: dict[str, str]) -> None:
    """Seal and store the provider's secret settings; a blank value keeps the stored one, so an
    operator re-saving a form (where the key is never shown) does not wipe it."""
    kept = unseal(provider.credentials) if provider.credentials else {}
    kept.update({name: value for name, value in values.items() if value})
    provider.credentials = seal(kept) if kept else ""
    provider.save(update_fields=["credentials"])


def provider_credentials(provider: Provider) -> dict[str, str]:
    """The provider's secret settings, opened, with GPUCLOUD_PROVIDER_<SLUG>_API_KEY over the stored key."""
    values = unseal(provider.credentials)
    from_env = os.environ.get(f"GPUCLOUD_PROVIDER_{provider.slug.upper().replace('-', '_')}_API_KEY")
    return {**values, "api_key": from_env} if from_env else values


def provider_credential_names(provider: Provider) -> list[str]:
    """Which secret settings are stored (their names only: what the admin shows)."""
    return sorted(unseal(provider.credentials)) if provider.credentials else []
