"""The cost comparison helper: what a dedicated deployment's tokens cost next to per-token list
prices. Our figures are measured; theirs are published list prices, labelled with their source."""

from __future__ import annotations

from dataclasses import dataclass

from deployments.metrics import Window

# Blended list prices per million tokens as quoted in the product brief (reference/003, "Cost
# Comparison Helper"). They change: the page names them as quoted figures, not live prices.
PUBLISHED_PER_MILLION_MICROS = (
    ("OpenAI GPT-4", 30_000_000),
    ("Anthropic Claude 3 Opus", 75_000_000),
    ("Together.ai (open models, typical)", 900_000),
)
PUBLISHED_SOURCE = "list prices per 1M tokens as quoted in gpucloud's product brief; check each provider's page"


@dataclass(frozen=True)
class Comparison:
    measured_micros: int | None  # GPU cost of the last 24 h ÷ tokens served in them
    at_throughput_micros: int | None  # the hourly rate ÷ tokens one stream generates in an hour
    tokens_per_second: float | None
    published: tuple[tuple[str, int], ...] = PUBLISHED_PER_MILLION_MICROS
    source: str = PUBLISHED_SOURCE


def cost_comparison(window: Window, *, hourly_rate_micros: int) -> Comparison:
    """`window` is the deployment's measured traffic; at its measured generation speed a single
    busy stream is the floor of its throughput (concurrent requests raise it, lowering the cost)."""
    tps = window.tokens_per_second
    at_throughput = int(hourly_rate_micros * 1_000_000 / (tps * 3600)) if tps and hourly_rate_micros else None
    return Comparison(
        measured_micros=window.cost_per_million_tokens_micros, at_throughput_micros=at_throughput, tokens_per_second=tps
    )
