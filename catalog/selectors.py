"""Reads of the catalog."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from catalog.models import CatalogModel, GpuType, ModelCategory, Preset, Region
from gpucloud.core.errors import InvalidRequest, NotFound


def models_list(
    *, category: str | None = None, search: str = "", gpu_type: str | None = None
) -> QuerySet[CatalogModel]:
    """The catalog, optionally one category, models matching every word of `search` (in the name,
    slug or description), and those that run on `gpu_type` by default."""
    qs = CatalogModel.objects.select_related("default_gpu_type")
    for word in search.split()[:8]:
        qs = qs.filter(Q(name__icontains=word) | Q(slug__icontains=word) | Q(description__icontains=word))
    if gpu_type:
        qs = qs.filter(default_gpu_type_id=gpu_type)
    if category:
        if category not in ModelCategory.values:
            raise InvalidRequest(
                f"Unknown category {category!r}; use one of {', '.join(ModelCategory.values)}.", param="category"
            )
        qs = qs.filter(category=category)
    return qs


def model_get(slug: str) -> CatalogModel:
    model = CatalogModel.objects.select_related("default_gpu_type").filter(slug=slug).first()
    if model is None:
        raise NotFound(f"No model {slug!r} in the catalog.", param="slug")
    return model


def categories_with_counts() -> list[dict[str, object]]:
    counts: dict[str, int] = {}
    for category in CatalogModel.objects.values_list("category", flat=True):
        counts[category] = counts.get(category, 0) + 1
    return [
        {"slug": value, "name": label, "model_count": counts.get(value, 0)} for value, label in ModelCategory.choices
    ]


def gpu_types_list() -> QuerySet[GpuType]:
    return GpuType.objects.all()


def regions_list() -> QuerySet[Region]:
    return Region.objects.all()


def presets_list() -> QuerySet[Preset]:
    return Preset.objects.select_related("gpu_type")
