"""What the gateway measured of each deployment's traffic, as the control plane reads it: counters
per deployment per minute and requests in flight (per deployment and per replica).

The gateway writes them (gateway/counters.py sums requests in its process and flushes every
FLUSH_SECONDS); the rollup, metrics, SLA, autoscaler and rollouts read them here. They live in Redis
hashes in the distributed topology (every gateway process adds to the same minute) and in this
process's memory in the embedded one.

Each gateway process also journals its requests in flight with every flush (what each would count if
it ended now); `lost_requests_recover` meters the journal of a process that stopped flushing for
DEAD_AFTER_SECONDS (it died), once, so a crash loses at most its last flush interval.

Latency and time to first token are kept as histograms over log-spaced buckets (each 10% wider
than the one before), so percentiles over any window are exact to within 10%.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict

import redis
import redis.asyncio
from django.conf import settings

from gpucloud.core.per_loop import PerLoop

# The gateway's promises to the control plane: a process flushes its counters every FLUSH_SECONDS,
# and re-reads a route (which replicas serve a deployment) within ROUTE_CACHE_SECONDS.
FLUSH_SECONDS = 1.0
ROUTE_CACHE_SECONDS = 2.0
BUCKET_GROWTH = 1.1
KEEP_SECONDS = 3 * 3600  # how long a minute's counters stay in the store after the minute
DEAD_AFTER_SECONDS = 60  # a gateway process silent this long (no flush) has died: its journal is metered
Key = tuple[str, int]  # (deployment id, minute as unix seconds)
Fields = dict[str, float]
Journal = dict[str, tuple[Key, Fields]]  # request id -> what it counts if it is lost now


def bucket(ms: float) -> int:
    """The histogram bucket of a duration: bucket i holds durations up to BUCKET_GROWTH**i ms."""
    return 0 if ms <= 1.0 else math.ceil(math.log(ms) / math.log(BUCKET_GROWTH))


def bucket_upper_ms(index: int) -> float:
    return float(BUCKET_GROWTH**index)


def merge(into: Fields, fields: Fields) -> None:
    for name, value in fields.items():
        into[name] = into.get(name, 0) + value


class LocalStore:
    """Counters in this process's memory (the embedded topology: one process serves and rolls up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[Key, Fields] = defaultdict(dict)
        self._in_flight: dict[str, int] = {}

    async def add(self, counts: dict[Key, Fields], in_flight: dict[str, int], journal: Journal | None = None) -> None:
        """The journal is not kept: in this topology the counters die with the process anyway."""
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

    def lost_requests_recover(self) -> int:
        return 0


class RedisStore:
    """Counters in Redis hashes, one per (deployment, minute), shared by every gateway process,
    indexed by minute overall (the rollup) and per deployment (a deployment's metrics read only
    its own minutes). Each process also publishes its in-flight counts under a key that expires
    when it stops, and its journal of requests in flight beside a heartbeat that expires
    DEAD_AFTER_SECONDS after its last flush."""

    PREFIX = "gpucloud:gw"

    def __init__(self, url: str) -> None:
        self.url = url
        # Unique per start: a restarted process (in a container: the same host name, pid 1) must
        # not take over the journal its predecessor left.
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
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

    def _journal(self, process: str) -> str:
        return f"{self.PREFIX}:open:{process}"

    def _alive(self, process: str) -> str:
        return f"{self.PREFIX}:alive:{process}"

    def _queue_counts(
        self, pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline, key: Key, fields: Fields
    ) -> None:
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

    async def add(self, counts: dict[Key, Fields], in_flight: dict[str, int], journal: Journal | None = None) -> None:
        # One transaction: a request that ended leaves the journal as its counts arrive, never
        # both nor neither.
        pipe = self._async().pipeline(transaction=True)
        for key, fields in counts.items():
            self._queue_counts(pipe, key, fields)
        flight = f"{self.PREFIX}:inflight:{self.process}"
        pipe.delete(flight)
        if in_flight:
            pipe.hset(flight, mapping=dict(in_flight))  # type: ignore[arg-type]
        pipe.expire(flight, 10)
        pipe.delete(self._journal(self.process))
        if journal:
            entries = {rid: json.dumps([key[0], key[1], fields]) for rid, (key, fields) in journal.items()}
            pipe.hset(self._journal(self.process), mapping=entries)  # type: ignore[arg-type]
            pipe.expire(self._journal(self.process), KEEP_SECONDS)
        pipe.set(self._alive(self.process), 1, ex=DEAD_AFTER_SECONDS)
        await pipe.execute()

    def lost_requests_recover(self) -> int:
        """Meter the journaled requests of every gateway process that has stopped flushing (its
        heartbeat expired): each journal is counted once, whoever else recovers at the same time
        (WATCH), and deleted. Returns how many requests were metered."""
        recovered = 0
        for journal in self._sync.scan_iter(self._journal("*")):
            process = str(journal).removeprefix(self._journal(""))
            with self._sync.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(journal, self._alive(process))
                    if pipe.exists(self._alive(process)):
                        continue
                    entries = [json.loads(raw) for raw in pipe.hgetall(journal).values()]
                    pipe.multi()
                    for deployment_id, minute, fields in entries:
                        self._queue_counts(pipe, (deployment_id, int(minute)), fields)
                    pipe.delete(journal)
                    pipe.execute()
                    recovered += len(entries)
                except redis.WatchError:
                    continue  # it flushed again, or another recoverer took it
        return recovered

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
        _store = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else LocalStore()
    return _store
