"""Per-request measurements of the gateway, summed per deployment per minute.

The hot path only adds numbers to a dict of this process (`observe`); a background task of the
event loop flushes them every FLUSH_SECONDS to the counter store: Redis hashes in the distributed
topology (so every gateway process adds to the same minute), this process's memory in the
embedded one. The rollup task copies finished minutes into `RequestMinute` rows.

Latency and time to first token are kept as histograms over log-spaced buckets (each 10% wider
than the one before), so percentiles over any window are exact to within 10%.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import redis
import redis.asyncio

from deployments.gateway.per_loop import PerLoop

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
BUCKET_GROWTH = 1.1
KEEP_SECONDS = 3 * 3600  # how long a minute's counters stay in the store after the minute
Key = tuple[str, int]  # (deployment id, minute as unix seconds)


@dataclass(slots=True)
class Sample:
    """One request through the gateway, as it ended."""

    deployment_id: str
    status: int
    latency_s: float
    ttft_s: float | None = None  # streams: the first generated token (a JSON answer has none)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cut: bool = False


def bucket(ms: float) -> int:
    """The histogram bucket of a duration: bucket i holds durations up to BUCKET_GROWTH**i ms."""
    return 0 if ms <= 1.0 else math.ceil(math.log(ms) / math.log(BUCKET_GROWTH))


def bucket_upper_ms(index: int) -> float:
    return float(BUCKET_GROWTH**index)


Fields = dict[str, float]


def merge(into: Fields, fields: Fields) -> None:
    for name, value in fields.items():
        into[name] = into.get(name, 0) + value


def fields_of(sample: Sample) -> Fields:
    latency_ms = sample.latency_s * 1000
    fields: Fields = {"requests": 1, "latency_ms_sum": latency_ms, f"lat:{bucket(latency_ms)}": 1}
    if sample.status >= 500:
        fields["errors"] = 1
    elif sample.status >= 300 or sample.status == 202:
        fields["rejected"] = 1
    if sample.cut:
        fields["cut"] = 1
    fields["prompt_tokens"] = sample.prompt_tokens
    fields["completion_tokens"] = sample.completion_tokens
    if sample.status < 300 and sample.ttft_s is not None:  # streams: the first token is observable
        ttft_ms = sample.ttft_s * 1000
        fields.update({"ttft_ms_sum": ttft_ms, "ttft_count": 1, f"ttft:{bucket(ttft_ms)}": 1})
    if sample.status < 300 and sample.completion_tokens:
        # Generation time: after the first token for streams; the whole request otherwise (a JSON
        # answer arrives at once, so its prompt processing cannot be told apart).
        first = sample.ttft_s * 1000 if sample.ttft_s is not None else 0.0
        fields["generation_ms_sum"] = max(0.0, latency_ms - first)
    return fields


class LocalStore:
    """Counters in this process's memory (the embedded topology: one process serves and rolls up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[Key, Fields] = defaultdict(dict)
        self._in_flight: dict[str, int] = {}

    async def add(self, counts: dict[Key, Fields], in_flight: dict[str, int]) -> None:
        with self._lock:
            for key, fields in counts.items():
                merge(self._minutes[key], fields)
            self._in_flight = dict(in_flight)
            horizon = time.time() - KEEP_SECONDS
            for key in [k for k in self._minutes if k[1] < horizon]:
                del self._minutes[key]

    def minutes(self, deployment_id: str | None = None) -> dict[Key, dict[str, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._minutes.items() if deployment_id in (None, k[0])}

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._in_flight)


class RedisStore:
    """Counters in Redis hashes, one per (deployment, minute), shared by every gateway process,
    indexed by minute overall (the rollup) and per deployment (a deployment's metrics read only
    its own minutes). Each process also publishes its in-flight counts under a key that expires
    when it stops."""

    PREFIX = "gpucloud:gw"

    def __init__(self, url: str) -> None:
        self.url = url
        self.process = f"{socket.gethostname()}:{os.getpid()}"
        self._async_clients: PerLoop[redis.asyncio.Redis] = PerLoop(
            lambda: redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        )
        # The readers (rollup task, metrics pages) share one pooled, thread-safe client.
        self._sync = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True)

    def _async(self) -> redis.asyncio.Redis:
        return self._async_clients.get()

    def _index(self, deployment_id: str | None) -> str:
        return f"{self.PREFIX}:index" if deployment_id is None else f"{self.PREFIX}:index:{deployment_id}"

    def _hash(self, key: Key) -> str:
        return f"{self.PREFIX}:m:{key[0]}:{key[1]}"

    async def add(self, counts: dict[Key, Fields], in_flight: dict[str, int]) -> None:
        pipe = self._async().pipeline(transaction=False)
        for key, fields in counts.items():
            name = self._hash(key)
            for field, value in fields.items():
                if isinstance(value, int):
                    pipe.hincrby(name, field, value)
                else:
                    pipe.hincrbyfloat(name, field, value)
            pipe.expire(name, KEEP_SECONDS + 120)
            pipe.zadd(self._index(None), {f"{key[0]}:{key[1]}": key[1]})
            pipe.zadd(self._index(key[0]), {f"{key[0]}:{key[1]}": key[1]})
            pipe.expire(self._index(key[0]), KEEP_SECONDS + 120)
        flight = f"{self.PREFIX}:inflight:{self.process}"
        pipe.delete(flight)
        if in_flight:
            pipe.hset(flight, mapping=dict(in_flight))  # type: ignore[arg-type]
        pipe.expire(flight, 10)
        await pipe.execute()

    def minutes(self, deployment_id: str | None = None) -> dict[Key, dict[str, float]]:
        index = self._index(deployment_id)
        self._sync.zremrangebyscore(index, 0, time.time() - KEEP_SECONDS)
        members = [str(m) for m in self._sync.zrange(index, 0, -1)]
        keys = [(dep, int(minute)) for dep, _, minute in (m.rpartition(":") for m in members)]
        pipe = self._sync.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._hash(key))
        result = {}
        for key, raw in zip(keys, pipe.execute(), strict=True):
            if raw:
                result[key] = {str(k): float(v) for k, v in raw.items()}
        return result

    def in_flight(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for name in self._sync.scan_iter(f"{self.PREFIX}:inflight:*"):
            for dep, count in self._sync.hgetall(name).items():
                totals[str(dep)] = totals.get(str(dep), 0) + int(count)
        return totals


_store: LocalStore | RedisStore | None = None


def store() -> LocalStore | RedisStore:
    global _store
    if _store is None:
        from django.conf import settings

        _store = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else LocalStore()
    return _store


class Aggregator:
    """This process's counters since the last flush."""

    def __init__(self) -> None:
        self.pending: dict[Key, Fields] = defaultdict(dict)
        self._flushers: PerLoop[asyncio.Task[None]] = PerLoop(
            lambda: asyncio.get_running_loop().create_task(self._flush_forever()), usable=lambda t: not t.done()
        )

    def observe(self, sample: Sample) -> None:
        minute = int(time.time()) // 60 * 60
        merge(self.pending[(sample.deployment_id, minute)], fields_of(sample))
        self.keep_flushing()

    def keep_flushing(self) -> None:
        """Start this loop's flusher unless it runs (it stops by itself once idle); called when a
        request starts too, so requests in flight are published while they last."""
        with contextlib.suppress(RuntimeError):  # no running loop: flushed by flush_now()
            self._flushers.get()

    def drain(self) -> dict[Key, Fields]:
        pending, self.pending = self.pending, defaultdict(dict)
        return pending

    async def flush(self) -> None:
        from deployments.gateway.routing import deployment_in_flight
        from deployments.gateway.routing import in_flight as instance_in_flight

        counts = self.drain()
        # Per deployment (the autoscaler, the metrics) and per replica (a draining replica is done
        # when its own count is zero); the ids' prefixes (dep_, inst_) keep the two apart.
        in_flight = {k: v for k, v in (*deployment_in_flight.items(), *instance_in_flight.items()) if v}
        try:
            await store().add(counts, in_flight)
        except Exception:  # Redis away: keep the counts for the next flush rather than lose them
            logger.warning("gateway counters not flushed; retrying", exc_info=True)
            for key, fields in counts.items():
                merge(self.pending[key], fields)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
            from deployments.gateway.routing import deployment_in_flight

            if not self.pending and not any(deployment_in_flight.values()):
                return  # idle: the next request starts the flusher again


aggregator = Aggregator()


def observe(sample: Sample) -> None:
    aggregator.observe(sample)


async def flush_now() -> None:
    """Flush this process's counters at once (tests, shutdown)."""
    await aggregator.flush()
