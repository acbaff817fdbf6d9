"""Per-request measurements of the gateway, summed per deployment per minute.

The hot path only adds numbers to a dict of this process (`observe`); a background task of the
event loop flushes them every FLUSH_SECONDS to the traffic store (deployments/traffic.py: Redis
hashes in the distributed topology, this process's memory in the embedded one), where the rollup,
metrics, SLA checks and the autoscaler read them.

A process that dies loses what it had not flushed. So that this is bounded for requests in flight
too (a stream may last minutes), each flush also writes, per request in flight for FLUSH_SECONDS or
more, what it would count if it ended now (failed, with the tokens known so far): the journal of
in-flight requests. A request that ends leaves the journal in the same flush that adds its own
counts. The rollup meters the journal of a process that stopped flushing (deployments/traffic.py,
lost_requests_recover). A crash thus loses at most the last FLUSH_SECONDS: requests that began in
it, and the tokens streamed in it by older requests in flight. (Younger requests are left out of
the journal because at 64 clients nearly every request in flight is milliseconds old: journaling
each, its prompt estimated, was a stall of the event loop every second.)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from deployments.traffic import FLUSH_SECONDS, Fields, Journal, Key, bucket, merge, store
from gateway.routing import deployment_in_flight
from gateway.routing import in_flight as instance_in_flight
from gpucloud.core.per_loop import PerLoop

logger = logging.getLogger(__name__)


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


class Aggregator:
    """This process's counters since the last flush."""

    def __init__(self) -> None:
        self.pending: dict[Key, Fields] = defaultdict(dict)
        # Requests in flight: since when (monotonic) and their sample if lost now.
        self.open: dict[str, tuple[float, Callable[[], Sample]]] = {}
        self._ids = itertools.count()
        self._flushers: PerLoop[asyncio.Task[None]] = PerLoop(
            lambda: asyncio.get_running_loop().create_task(self._flush_forever()), usable=lambda t: not t.done()
        )
        self._flusher: asyncio.Task[None] | None = None  # the last one started or found: checked first

    def observe(self, sample: Sample) -> None:
        minute = int(time.time()) // 60 * 60
        merge(self.pending[(sample.deployment_id, minute)], fields_of(sample))
        self.keep_flushing()

    def keep_flushing(self) -> None:
        """Start this loop's flusher unless it runs (it stops by itself once idle); called when a
        request starts too, so requests in flight are published while they last."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop: flushed by flush_now()
            return
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:  # twice per request: cheap first
            self._flusher = self._flushers.get()

    def track(self, lost: Callable[[], Sample]) -> str:
        """A request is in flight: journal `lost()` with every flush until `untrack`."""
        request_id = str(next(self._ids))
        self.open[request_id] = (time.monotonic(), lost)
        self.keep_flushing()
        return request_id

    def untrack(self, request_id: str) -> None:
        self.open.pop(request_id, None)

    def journal(self) -> Journal:
        minute = int(time.time()) // 60 * 60
        began_before = time.monotonic() - FLUSH_SECONDS
        journal: Journal = {}
        for request_id, (began, lost) in list(self.open.items()):
            if began > began_before:
                continue  # lost in a crash within the bound anyway (it began in the last interval)
            sample = lost()
            journal[request_id] = ((sample.deployment_id, minute), fields_of(sample))
        return journal

    def drain(self) -> dict[Key, Fields]:
        pending, self.pending = self.pending, defaultdict(dict)
        return pending

    async def flush(self) -> None:
        counts = self.drain()
        # Per deployment (the autoscaler, the metrics) and per replica (a draining replica is done
        # when its own count is zero); the ids' prefixes (dep_, inst_) keep the two apart.
        in_flight = {k: v for k, v in (*deployment_in_flight.items(), *instance_in_flight.items()) if v}
        try:
            await store().add(counts, in_flight, self.journal())
        except Exception:  # Redis away: keep the counts for the next flush rather than lose them
            logger.warning("gateway counters not flushed; retrying", exc_info=True)
            for key, fields in counts.items():
                merge(self.pending[key], fields)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
            if not self.pending and not self.open and not any(deployment_in_flight.values()):
                return  # idle: the next request starts the flusher again


aggregator = Aggregator()


def observe(sample: Sample) -> None:
    aggregator.observe(sample)


async def flush_now() -> None:
    """Flush this process's counters at once (tests, shutdown)."""
    await aggregator.flush()
