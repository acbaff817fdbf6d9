"""The journal of requests in flight (gateway/counters.py): what a crash would lose is bounded by
FLUSH_SECONDS, so only requests in flight that long are journaled."""

from __future__ import annotations

import time

import pytest

from deployments.traffic import FLUSH_SECONDS
from gateway import counters


def lost_sample(tokens: int) -> counters.Sample:
    return counters.Sample(deployment_id="dep_1", status=502, latency_s=1.0, completion_tokens=tokens)


def test_requests_in_flight_a_flush_interval_or_longer_are_journaled_younger_ones_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aggregator = counters.Aggregator()
    now = time.monotonic()
    asked: list[int] = []

    def lost(tokens: int) -> counters.Sample:
        asked.append(tokens)
        return lost_sample(tokens)

    old = aggregator.track(lambda: lost(7))
    young = aggregator.track(lambda: lost(3))
    aggregator.open[old] = (now - FLUSH_SECONDS - 0.01, aggregator.open[old][1])  # began before the interval
    journal = aggregator.journal()
    assert set(journal) == {old}
    assert journal[old][1]["completion_tokens"] == 7 and journal[old][1]["errors"] == 1
    assert asked == [7]  # the young one's sample (its prompt estimate) was not even made
    monkeypatch.setattr(counters.time, "monotonic", lambda: now + FLUSH_SECONDS + 0.01)
    assert set(aggregator.journal()) == {old, young}  # a flush later it is old enough
    aggregator.untrack(old)
    assert set(aggregator.journal()) == {young}
