from __future__ import annotations

from typing import Any

from ninja import Schema
from pydantic import Field

from gpucloud.core.money import MICROS_PER_USD


class Price(Schema):
    hourly_price_micros: int = Field(description="Price per hour in micro-USD (1 USD = 1,000,000)")
    hourly_price_usd: float = Field(
        description="The same price in US dollars, e.g. 4.41 (a number, as every *_usd field)"
    )

    @staticmethod
    def resolve_hourly_price_usd(obj: Any) -> float:
        return int(obj.hourly_price_micros) / MICROS_PER_USD


class GpuTypeOut(Price):
    slug: str
    name: str
    vendor: str
    gpu_count: int
    vram_gb: int


class RegionOut(Schema):
    slug: str
    name: str


class CatalogModelOut(Price):
    slug: str
    name: str
    category: str
    parameters: str
    min_vram_gb: int
    engine: str
    engine_args: dict[str, Any]
    default_gpu_type: str = Field(alias="default_gpu_type_id")
    context_length: int | None
    description: str


class CategoryOut(Schema):
    slug: str
    name: str
    model_count: int


class PresetOut(Schema):
    slug: str
    name: str
    gpu_type: str = Field(alias="gpu_type_id")
    engine_config: dict[str, Any]
    best_for: str
