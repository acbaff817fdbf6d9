from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from deployments.models import Deployment, DeploymentKind
from gpucloud.core.durations import duration_text
from gpucloud.core.money import usd_display, usd_text

register = template.Library()


@register.filter
def usd(micros: int | None) -> str:
    """Integer micro-USD as people read it, by gpucloud.core.money's one rule: exact, trailing
    zeros dropped down to cents (4998501 -> '$4.998501', 4410000 -> '$4.41', 833 -> '$0.000833')."""
    return "—" if micros is None else usd_display(micros)


@register.filter
def as_json(value: Any) -> str:
    """A value for a data- attribute that a script reads with JSON.parse (autoescaping quotes it)."""
    return json.dumps(value, separators=(",", ":"))


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


@register.filter
def status_word(deployment: Deployment) -> str:
    """The status as its page says it: a pod's own words (running, stopped, terminated...), else
    the deployment's (Active, Scaled to zero...). A pod's row must come with it (select_related)."""
    if deployment.kind == DeploymentKind.POD:
        return deployment.pod.status
    return str(deployment.get_status_display())
