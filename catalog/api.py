"""REST endpoints of the catalog: models, categories, GPU types, regions, presets."""

from __future__ import annotations

from typing import Annotated, Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router
from pydantic import Field

from catalog import schemas, selectors
from catalog.models import CatalogModel, GpuType, ModelCategory, Preset, Region
from gpucloud.core.errors import InvalidRequest, answers

router = Router(tags=["catalog"])

# The selector names the categories in its refusal (400); the description lists them too.
CATEGORY_ENUM: dict[str, Any] = {"enum": [*ModelCategory.values, None]}


# Declared before /models/{slug} so that "categories" is not taken for a slug.
@router.get("/models/categories", response=list[schemas.CategoryOut], summary="Model categories with counts")
def models_categories(request: HttpRequest) -> list[dict[str, object]]:
    return selectors.categories_with_counts()


@router.get("/models", response=list[schemas.CatalogModelOut], summary="The model catalog")
@answers(400)
def models_list(
    request: HttpRequest,
    category: Annotated[str | None, Field(json_schema_extra={"enum": [*ModelCategory.values, None]})] = None,
) -> QuerySet[CatalogModel]:
    if category == "":  # the description's enum has no empty name: say so rather than list everything
        raise InvalidRequest("category is empty: name one, or leave it out for every category.", param="category")
    return selectors.models_list(category=category)


@router.get("/models/{slug}", response=schemas.CatalogModelOut, summary="One catalog model")
def models_get(request: HttpRequest, slug: str) -> CatalogModel:
    return selectors.model_get(slug)


@router.get("/gpu-types", response=list[schemas.GpuTypeOut], summary="GPU types with list prices")
def gpu_types_list(request: HttpRequest) -> QuerySet[GpuType]:
    return selectors.gpu_types_list()


@router.get("/regions", response=list[schemas.RegionOut], summary="Regions")
def regions_list(request: HttpRequest) -> QuerySet[Region]:
    return selectors.regions_list()


@router.get("/presets", response=list[schemas.PresetOut], summary="Inference presets (GPU class + engine config)")
def presets_list(request: HttpRequest) -> QuerySet[Preset]:
    return selectors.presets_list()
