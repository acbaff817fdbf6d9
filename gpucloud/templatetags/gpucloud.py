from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from gpucloud.core.durations import duration_text
from gpucloud.core.money import usd_text

register = template.Library()


def _dollars(micros: int, places: int) -> str:
    text = usd_text(micros, places=places)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


@register.filter
def usd(micros: int | None) -> str:
    """Format integer micro-USD as dollars: 4410000 -> '$4.41'; an amount under a cent keeps its
    micro-dollars (833 -> '$0.000833'), since a minute of a cheap GPU would otherwise read $0.00."""
    if micros is None:
        return "—"
    return _dollars(micros, 6 if 0 < abs(micros) < 10_000 else 2)


@register.filter
def usd_exact(micros: int | None) -> str:
    """Every micro-dollar of a balance: 24996612 -> '$24.996612' (not '$25.00' beside a ticking
    $24.99...); whole cents keep two places."""
    if micros is None or micros % 10_000 == 0:
        return usd(micros)
    return _dollars(micros, 6)


@register.filter
def usd_number(micros: int | None) -> str:
    """For form values: 25000000 -> '25.00'."""
    return "" if micros is None else usd_text(micros)


@register.filter
def duration(value: timedelta | None) -> str:
    """A timedelta as people read it: timedelta(seconds=7500) -> '2 h 05 min'."""
    return "—" if value is None else duration_text(int(value.total_seconds()))


@register.filter
def ago(value: datetime | None) -> str:
    """How long ago, as a feed says it: 'just now' under a minute, else '5 minutes ago'."""
    if value is None:
        return "—"
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"
