"""Request metrics per deployment: the rollup of the gateway's per-minute counters into
`RequestMinute` rows, and summaries over a window (requests, errors, latency and TTFT
percentiles, tokens/s, in-flight, GPU cost and cost per million tokens, reference/004).

The rollup writes each minute's absolute totals, so it is safe to run any number of times and
late counters of a minute simply rewrite its row on the next run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from deployments import traffic
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
    """Copy the counter store's minutes into RequestMinute rows; returns how many were written.
    First the requests that a dead gateway process had in flight are metered into its counters."""
    now = now or time.time()
    traffic.store().lost_requests_recover()
    existing = set(Deployment.objects.values_list("pk", flat=True))
    written = 0
    for (deployment_id, minute), fields in traffic.store().minutes().items():
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
    """What a deployment served in a window: the one shape behind the API's metrics and the page's."""

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
    tokens_per_second: float | None
    in_flight: int
    gpu_cost_micros: int
    cost_per_million_tokens_micros: int | None


# What a window's less obvious figures mean (the API's schema shows them, deployments/schemas.py).
WINDOW_DESCRIPTIONS = {
    "errors": "Requests the engine or the gateway failed (5xx)",
    "rejected": "Requests refused before the engine: 4xx, 429, 202 while waking",
    "cut": "Streams the client closed early (metered up to the cut)",
    "tokens_per_second": "Generated tokens per second of generation time",
}


Fields = dict[str, float]
Hours = dict[int, Fields]  # clock hour (epoch seconds) -> its summed counters and histograms
HOUR_SECONDS = 3600


def deployment_window(
    deployment: Deployment, *, since: datetime, until: datetime | None = None, hours: Hours | None = None
) -> Window:
    """The deployment's requests from `since` to `until` (now): stored minutes, overlaid with the
    counter store's newer totals for the minutes not rolled up yet (`hours`, when the caller has
    read them already with `hours_between`)."""
    until = until or timezone.now()
    total: Fields = {}
    for fields in (hours if hours is not None else hours_between(deployment, since, until)).values():
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
    deployment: Deployment, *, since: datetime, until: datetime, hours: Hours | None = None
) -> list[SeriesPoint]:
    """Requests, errors and latency per clock hour from the hour of `since` to that of `until`,
    empty hours included (the charts draw a gap as zero traffic, which it is)."""
    hours = hours if hours is not None else hours_between(deployment, since, until)
    first, last = _hour(since.timestamp()), _hour(until.timestamp())
    points = []
    for hour in range(first, last + 1, HOUR_SECONDS):
        total = hours.get(hour, {})
        requests = int(total.get("requests", 0))
        points.append(SeriesPoint(
            start=datetime.fromtimestamp(hour, UTC), requests=requests, errors=int(total.get("errors", 0)),
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
        for i in deployment.instances.all()  # prefetched on the page
        if i.ready_at is not None
    )
    covered, reach = timedelta(0), start
    for begin, finish in intervals:
        begin = max(begin, reach)
        if finish > begin:
            covered += finish - begin
            reach = finish
    return min(1.0, covered / (end - start))


def hours_between(deployment: Deployment, since: datetime, until: datetime) -> Hours:
    """The deployment's counters from `since` to `until`, summed per clock hour: the database sums
    the stored minutes' counters per hour, Python merges their histograms, and the counter store's
    newer totals replace the minutes not rolled up yet. A day of busy minutes is 1,440 rows; the
    pages read it on every view."""
    recent = {
        minute: fields
        for (_, minute), fields in traffic.store().minutes(deployment.pk).items()
        if _minute(since).timestamp() <= minute <= until.timestamp()
    }
    stored = RequestMinute.objects.filter(deployment=deployment, minute__gte=_minute(since), minute__lte=until)
    stored = stored.exclude(minute__in=[datetime.fromtimestamp(m, UTC) for m in recent])
    hours: Hours = {}
    per_hour = stored.annotate(hour=TruncHour("minute", tzinfo=UTC)).values("hour")
    for row in per_hour.annotate(**{name: Sum(name) for name in (*COUNTERS, *SUMS)}).order_by():
        hours[int(row["hour"].timestamp())] = {name: float(row[name] or 0) for name in (*COUNTERS, *SUMS)}
    for hour, name, count in _histograms_per_hour(stored):
        fields = hours.setdefault(hour, {})  # a minute rolled up between the two reads lands anyway
        fields[name] = fields.get(name, 0) + count
    for epoch, fields in recent.items():
        _add(hours.setdefault(_hour(epoch), {}), fields)
    return hours


# PostgreSQL sums the histograms' buckets itself (jsonb_each_text over the selected minutes), which
# spares decoding a JSON object per minute in Python: most of the page's time for a busy day.
_PG_HISTOGRAMS = """
    SELECT hour, name, SUM(count)::bigint FROM (
        SELECT date_trunc('hour', m.minute, 'UTC') AS hour, 'lat:' || h.key AS name, h.value::bigint AS count
        FROM ({minutes}) m, jsonb_each_text(m.latency_hist) h
        UNION ALL
        SELECT date_trunc('hour', m.minute, 'UTC'), 'ttft:' || h.key, h.value::bigint
        FROM ({minutes}) m, jsonb_each_text(m.ttft_hist) h
    ) buckets GROUP BY hour, name
"""


def _histograms_per_hour(stored: QuerySet[RequestMinute]) -> Iterator[tuple[int, str, int]]:
    """(clock hour, 'lat:<bucket>' or 'ttft:<bucket>', count) summed over the `stored` minutes."""
    if connection.vendor == "postgresql":
        minutes, params = stored.values("minute", "latency_hist", "ttft_hist").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(_PG_HISTOGRAMS.format(minutes=minutes), (*params, *params))
            for hour, name, count in cursor.fetchall():
                yield _hour(hour.timestamp()), name, int(count)
        return
    for at, latency_hist, ttft_hist in stored.values_list("minute", "latency_hist", "ttft_hist"):
        hour = _hour(at.timestamp())
        yield from ((hour, "lat:" + key, int(count)) for key, count in latency_hist.items())
        yield from ((hour, "ttft:" + key, int(count)) for key, count in ttft_hist.items())


def _hour(epoch: float) -> int:
    return int(epoch) // HOUR_SECONDS * HOUR_SECONDS


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
        in_flight=traffic.store().in_flight().get(deployment.pk, 0),
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
            return round(traffic.bucket_upper_ms(index), 2)
    return round(traffic.bucket_upper_ms(buckets[-1][0]), 2)


def gpu_cost_micros(deployment: Deployment, *, since: datetime, until: datetime) -> int:
    """What the deployment's replicas cost over the window: each instance's running time inside
    it at its hourly price (the 60-second session minimum is a billing rule, not GPU time)."""
    total = 0
    now = timezone.now()
    for instance in deployment.instances.all():  # prefetched on the page
        if instance.launched_at is None:
            continue
        start = max(instance.launched_at, since)
        end = min(instance.terminated_at or now, until)
        if end > start:
            total += int(instance.hourly_price_micros * (end - start) / timedelta(hours=1))
    return total
