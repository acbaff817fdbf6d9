"""When a pod was last used, for the idle round (deployments.pods.pods_idle_round): a request through
the platform's proxy marks it in the cache (Redis in the distributed topology, so every gateway process
counts), at most once per MARK_EVERY_SECONDS per process; an SSH session counts where the pod's provider
tells (Driver.last_activity: the local provider does)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.core.cache import cache

MARK_EVERY_SECONDS = 30.0
KEEP_SECONDS = 7 * 24 * 3600  # longer than any idle timeout
_marked: dict[str, float] = {}  # pod id -> monotonic time this process last marked it


def _key(pod_id: str) -> str:
    return f"pod-activity:{pod_id}"


async def pod_activity_mark(pod_id: str) -> None:
    """A request reached the pod through the proxy (cheap when repeated: one cache write per 30 s)."""
    now = time.monotonic()
    if now - _marked.get(pod_id, -MARK_EVERY_SECONDS) < MARK_EVERY_SECONDS:
        return
    _marked[pod_id] = now
    await cache.aset(_key(pod_id), datetime.now(UTC).timestamp(), KEEP_SECONDS)


def pod_last_request(pod_id: str) -> datetime | None:
    stamp = cache.get(_key(pod_id))
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
