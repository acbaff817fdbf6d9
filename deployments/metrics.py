"""Request metrics per deployment: the rollup of the gateway's per-minute counters into
`RequestMinute` rows, and summaries over a window (requests, errors, latency and TTFT
percentiles, tokens/s, in-flight, GPU cost and cost per million tokens, reference/004).

The rollup writes each minute's absolute totals, so it is safe to run any number of times and
late counters of a minute simply rewrite its row on the next run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from deployments.gateway import metering
from deployments.models import Deployment, RequestMinute

COUNTERS = (
    "requests",
    "errors",
    "rejected",
    "cut",
    "prompt_tokens",
    "completion_tokens",
    "ttft_count",
)
SUMS = ("latency_ms_sum", "ttft_ms_sum", "generation_ms_sum")


def request_minutes_rollup(*, now: float | None = None) -> int:
    """Copy the counter store's minutes into RequestMinute rows; returns how many were written."""
    now = now or time.time()
    existing = set(Deployment.objects.values_list("pk", flat=True))
    written = 0
    for (deployment_id, minute), fields in metering.store().minutes().items():
        if deployment_id not in existing:
            continue
        values = _row_values(fields)
        with transaction.atomic():
            RequestMinute.objects.update_or_create(
                deployment_id=deployment_id, minute=datetime.fromtimestamp(minute, UTC), defaults=values
            )
        written += 1
    return written


def _row_values(fields: dict[str, float]) -> dict[str, object]:
    values: dict[str, object] = {name: int(fields.get(name, 0)) for name in COUNTERS}
    values.update({name: float(fields.get(name, 0.0)) for name in SUMS})
    values["latency_hist"] = {k[4:]: int(v) for k, v in fields.items() if k.startswith("lat:")}
    values["ttft_hist"] = {k[5:]: int(v) for k, v in fields.items() if k.startswith("ttft:")}
    return values


@dataclass(frozen=True)
class Window:
    requests: int
    errors: int
    rejected: int
    cut: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms_avg: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    ttft_ms_avg: float | None
    ttft_ms_p95: float | None
    tokens_per_second: float | None  # generated tokens per second of generation, per request
    in_flight: int
    gpu_cost_micros: int
    cost_per_million_tokens_micros: int | None


Minutes = dict[int, dict[str, float]]


def deployment_window(
    deployment: Deployment, *, since: datetime, until: datetime | None = None, minutes: Minutes | None = None
) -> Window:
    """The deployment's requests from `since` to `until` (now): stored minutes, overlaid with the
    counter store's newer totals for the minutes not rolled up yet (`minutes`, when the caller
    has read them already)."""
    until = until or timezone.now()
    total: dict[str, float] = {}
    for fields in (minutes if minutes is not None else minutes_between(deployment, since, until)).values():
        _add(total, fields)
    return _summary(deployment, total, since, until)


@dataclass(frozen=True)
class SeriesPoint:
    start: datetime
    requests: int
    errors: int
    latency_ms_avg: float | None
    latency_ms_p95: float | None


def deployment_series(
    deployment: Deployment,
    *,
    since: datetime,
    until: datetime,
    step: timedelta = timedelta(hours=1),
    minutes: Minutes | None = None,
) -> list[SeriesPoint]:
    """Requests, errors and latency per `step` from `since` to `until`, empty steps included
    (the charts draw a gap as zero traffic, which it is)."""
    origin = _minute(since)
    buckets: dict[int, dict[str, float]] = {}
    minutes = minutes if minutes is not None else minutes_between(deployment, since, until)
    for minute, fields in minutes.items():
        _add(buckets.setdefault(int((minute - origin.timestamp()) // step.total_seconds()), {}), fields)
    points = []
    for index in range(int((until - origin) / step) + 1):
        total = buckets.get(index, {})
        requests = int(total.get("requests", 0))
        points.append(SeriesPoint(
            start=origin + index * step, requests=requests, errors=int(total.get("errors", 0)),
            latency_ms_avg=round(total["latency_ms_sum"] / requests, 2) if requests else None,
            latency_ms_p95=_percentile(total, "lat:", 0.95),
        ))  # fmt: skip
    return points


def uptime_ratio(deployment: Deployment, *, since: datetime, until: datetime) -> float | None:
    """The share of the window, from when the deployment was first active, with at least one
    ready replica; None before it ever was."""
    start = max(since, deployment.started_at) if deployment.started_at else None
    end = min(until, deployment.stopped_at) if deployment.stopped_at else until
    if start is None or end <= start:
        return None
    intervals = sorted(
        (max(i.ready_at, start), min(i.terminated_at or end, end))
        for i in deployment.instances.exclude(ready_at=None)
        if i.ready_at is not None
    )
    covered, reach = timedelta(0), start
    for begin, finish in intervals:
        begin = max(begin, reach)
        if finish > begin:
            covered += finish - begin
            reach = finish
    return min(1.0, covered / (end - start))


def minutes_between(deployment: Deployment, since: datetime, until: datetime) -> Minutes:
    """The deployment's counters per minute (epoch seconds): stored rows overlaid with the counter
    store's newer totals for the minutes not rolled up yet."""
    rows: Minutes = {}
    stored = RequestMinute.objects.filter(deployment=deployment, minute__gte=_minute(since), minute__lte=until)
    for minute, *values, latency_hist, ttft_hist in stored.values_list(
        "minute", *COUNTERS, *SUMS, "latency_hist", "ttft_hist"
    ):
        fields = dict(zip((*COUNTERS, *SUMS), map(float, values), strict=True))
        fields.update({f"lat:{k}": float(v) for k, v in latency_hist.items()})
        fields.update({f"ttft:{k}": float(v) for k, v in ttft_hist.items()})
        rows[int(minute.timestamp())] = fields
    for (_, minute), fields in metering.store().minutes(deployment.pk).items():
        if _minute(since).timestamp() <= minute <= until.timestamp():
            rows[minute] = fields
    return rows


def _add(total: dict[str, float], fields: dict[str, float]) -> None:
    for name, value in fields.items():
        total[name] = total.get(name, 0) + value


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _summary(deployment: Deployment, total: dict[str, float], since: datetime, until: datetime) -> Window:
    requests = int(total.get("requests", 0))
    ttft_count = int(total.get("ttft_count", 0))
    completion = int(total.get("completion_tokens", 0))
    generation_s = total.get("generation_ms_sum", 0.0) / 1000
    tokens = int(total.get("prompt_tokens", 0)) + completion
    cost = gpu_cost_micros(deployment, since=since, until=until)
    return Window(
        requests=requests,
        errors=int(total.get("errors", 0)),
        rejected=int(total.get("rejected", 0)),
        cut=int(total.get("cut", 0)),
        prompt_tokens=int(total.get("prompt_tokens", 0)),
        completion_tokens=completion,
        latency_ms_avg=round(total["latency_ms_sum"] / requests, 2) if requests else None,
        latency_ms_p50=_percentile(total, "lat:", 0.50),
        latency_ms_p95=_percentile(total, "lat:", 0.95),
        ttft_ms_avg=round(total["ttft_ms_sum"] / ttft_count, 2) if ttft_count else None,
        ttft_ms_p95=_percentile(total, "ttft:", 0.95),
        tokens_per_second=round(completion / generation_s, 2) if generation_s > 0 else None,
        in_flight=metering.store().in_flight().get(deployment.pk, 0),
        gpu_cost_micros=cost,
        cost_per_million_tokens_micros=cost * 1_000_000 // tokens if tokens else None,
    )


def _percentile(total: dict[str, float], prefix: str, q: float) -> float | None:
    """The q-quantile from a log-bucket histogram: the upper edge of the bucket holding it."""
    buckets = sorted((int(k[len(prefix) :]), v) for k, v in total.items() if k.startswith(prefix))
    count = sum(v for _, v in buckets)
    if not count:
        return None
    seen = 0.0
    for index, value in buckets:
        seen += value
        if seen >= q * count:
            return round(metering.bucket_upper_ms(index), 2)
    return round(metering.bucket_upper_ms(buckets[-1][0]), 2)


def gpu_cost_micros(deployment: Deployment, *, since: datetime, until: datetime) -> int:
    """What the deployment's replicas cost over the window: each instance's running time inside
    it at its hourly price (the 60-second session minimum is a billing rule, not GPU time)."""
    total = 0
    now = timezone.now()
    for instance in deployment.instances.exclude(launched_at=None):
        assert instance.launched_at is not None
        start = max(instance.launched_at, since)
        end = min(instance.terminated_at or now, until)
        if end > start:
            total += int(instance.hourly_price_micros * (end - start) / timedelta(hours=1))
    return total
