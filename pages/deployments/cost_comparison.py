"""The cost comparison helper: what a deployment's tokens cost next to the per-token list prices of
comparable open-weights models on hosted APIs. Our figures are measured; theirs are list prices,
each with its source and the date it was read (pages/deployments/hosted_prices.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from deployments.metrics import Window
from pages.deployments.hosted_prices import HostedPrice, hosted_prices_for


@dataclass(frozen=True)
class Comparison:
    measured_micros: int | None  # GPU cost of the last 24 h ÷ tokens served in them
    at_throughput_micros: int | None  # the hourly rate ÷ tokens one stream generates in an hour
    tokens_per_second: float | None
    hosted: list[HostedPrice] = field(default_factory=list)  # comparable models' list prices
    hosted_note: str = ""  # said when the hosted models are not the same model


def cost_comparison(window: Window, *, hourly_rate_micros: int, model_slug: str | None) -> Comparison:
    """`window` is the deployment's measured traffic; at its measured generation speed a single
    busy stream is the floor of its throughput (concurrent requests raise it, lowering the cost)."""
    tps = window.tokens_per_second
    at_throughput = int(hourly_rate_micros * 1_000_000 / (tps * 3600)) if tps and hourly_rate_micros else None
    hosted, note = hosted_prices_for(model_slug)
    return Comparison(
        measured_micros=window.cost_per_million_tokens_micros, at_throughput_micros=at_throughput,
        tokens_per_second=tps, hosted=hosted, hosted_note=note,
    )  # fmt: skip
