from __future__ import annotations

from django import template

from gpucloud.money import usd_text

register = template.Library()


@register.filter
def usd(micros: int | None) -> str:
    """Format integer micro-USD as dollars: 4410000 -> '$4.41'."""
    if micros is None:
        return "—"
    text = usd_text(micros)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


@register.filter
def usd_number(micros: int | None) -> str:
    """For form values: 25000000 -> '25.00'."""
    return "" if micros is None else usd_text(micros)
