"""REST endpoints of the catalog: models, categories, GPU types, regions, presets."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from catalog import schemas, selectors
from catalog.models import CatalogModel, GpuType, Preset
from gpucloud.money import usd_text

router = Router(tags=["catalog"])


def _price(micros: int) -> dict[str, object]:
    return {"hourly_price_micros": micros, "hourly_price_usd": usd_text(micros)}


def _model_out(model: CatalogModel) -> dict[str, object]:
    return {
        "slug": model.slug,
        "name": model.name,
        "category": model.category,
        "parameters": model.parameters,
        "min_vram_gb": model.min_vram_gb,
        "engine": model.engine,
        "engine_args": model.engine_args,
        "default_gpu_type": model.default_gpu_type_id,
        "context_length": model.context_length,
        "description": model.description,
        **_price(model.hourly_price_micros),
    }


def _gpu_out(gpu: GpuType) -> dict[str, object]:
    return {
        "slug": gpu.slug,
        "name": gpu.name,
        "vendor": gpu.vendor,
        "gpu_count": gpu.gpu_count,
        "vram_gb": gpu.vram_gb,
        **_price(gpu.hourly_price_micros),
    }


# Declared before /models/{slug} so that "categories" is not taken for a slug.
@router.get("/models/categories", response=list[schemas.CategoryOut], summary="Model categories with counts")
def models_categories(request: HttpRequest) -> list[dict[str, object]]:
    return selectors.categories_with_counts()


@router.get("/models", response=list[schemas.CatalogModelOut], summary="The model catalog")
def models_list(request: HttpRequest, category: str | None = None) -> list[dict[str, object]]:
    return [_model_out(m) for m in selectors.models_list(category=category)]


@router.get("/models/{slug}", response=schemas.CatalogModelOut, summary="One catalog model")
def models_get(request: HttpRequest, slug: str) -> dict[str, object]:
    return _model_out(selectors.model_get(slug))


@router.get("/gpu-types", response=list[schemas.GpuTypeOut], summary="GPU types with list prices")
def gpu_types_list(request: HttpRequest) -> list[dict[str, object]]:
    return [_gpu_out(g) for g in selectors.gpu_types_list()]


@router.get("/regions", response=list[schemas.RegionOut], summary="Regions")
def regions_list(request: HttpRequest) -> list[object]:
    return list(selectors.regions_list())


@router.get("/presets", response=list[schemas.PresetOut], summary="Inference presets (GPU class + engine config)")
def presets_list(request: HttpRequest) -> list[dict[str, object]]:
    return [_preset_out(p) for p in selectors.presets_list()]


def _preset_out(preset: Preset) -> dict[str, object]:
    return {
        "slug": preset.slug,
        "name": preset.name,
        "gpu_type": preset.gpu_type_id,
        "engine_config": preset.engine_config,
        "best_for": preset.best_for,
    }
