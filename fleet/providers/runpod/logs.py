"""A pod's log, from `GET /v2/pods/{id}/logs`: Server-Sent Events whose `data` is
`{"source": "container", "line": "...", "ts": "..."}`, first the last `tail` lines (the backfill), then
new lines as they come. The stream never ends by itself while the pod lives, so a read of the tail
stops at `tail` lines or once the stream falls silent (`logs_idle_seconds`), whichever comes first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from fleet.providers.cloud.api import CloudApi, CloudNotFound

MAX_TAIL = 5000  # the description's bound on `tail`
SOURCE = "container"  # the engine's own output (`system` is RunPod's: image pulls, scheduling)
_CUT = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError)


def log_tail(api: CloudApi, pod_id: str, *, tail: int, idle: httpx.Timeout, deadline_seconds: float) -> list[str]:
    """The last `tail` lines; none for a pod that is gone."""
    if tail <= 0:
        return []
    lines: list[str] = []
    until = time.monotonic() + deadline_seconds
    try:
        with api.stream("GET", f"/v2/pods/{pod_id}/logs", params=_params(tail), timeout=idle) as response:
            for line in event_lines(response.iter_lines()):
                lines.append(line)
                if len(lines) >= tail or time.monotonic() > until:
                    break
    except CloudNotFound:
        return []
    except _CUT:
        pass  # silent for `idle` (the backfill is over), or cut: what came is the tail
    return lines[-tail:]


def log_follow(api: CloudApi, pod_id: str, *, idle: httpx.Timeout) -> Iterator[str]:
    """The backfill, then new lines as they come, until the stream ends or stays silent for `idle`."""
    try:
        with api.stream("GET", f"/v2/pods/{pod_id}/logs", params=_params(100), timeout=idle) as response:
            yield from event_lines(response.iter_lines())
    except CloudNotFound:
        return
    except _CUT:
        return


def event_lines(raw_lines: Iterator[str]) -> Iterator[str]:
    """The log line of each event of an SSE stream (data fields joined, comments and other fields skipped)."""
    data: list[str] = []
    for raw in raw_lines:
        if raw == "":
            if data:
                yield _line_of("\n".join(data))
                data = []
            continue
        field, _, value = raw.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield _line_of("\n".join(data))


def _line_of(payload: str) -> str:
    try:
        event = json.loads(payload)
    except ValueError:
        return payload
    return str(event.get("line", "")) if isinstance(event, dict) else payload


def _params(tail: int) -> dict[str, str | int]:
    return {"source": SOURCE, "tail": min(tail, MAX_TAIL)}
