"""A small per-process cache with a time to live, single-flight loads and refresh-ahead.

When many requests miss the same key at once, one lookup runs and the others await its result.
An entry used in the second half of its life is refreshed by one background lookup while it is
still served, so under steady traffic no request waits for the database; an entry is never
served past its time to live, so a change (a revoked key, a new replica) shows within it.

A change that is announced (gpucloud/core/access_changes.py) need not wait for it: `forget_where`
drops the entries it makes stale, and a load already in progress (which may have read the database
before the change) neither stores nor serves its value to requests that arrive after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
logger = logging.getLogger(__name__)


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # moved on by forget_where: loads begun before it store nothing

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None:
            fresh_until, value = entry
            if now < fresh_until - self.ttl / 2:
                return value
            if now < fresh_until:
                if key not in self._loading:
                    task = asyncio.ensure_future(self._load(key, load))
                    task.add_done_callback(_quiet)
                return value
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._load(key, load)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as unhandled
            raise
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]
        if generation == self._generation:
            self.put(key, value)
        future.set_result(value)
        return value

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def forget_where(self, stale: Callable[[V], bool]) -> None:
        """Drop every entry whose value is `stale`, and detach the loads in progress. Callable from
        any thread: it only reads a snapshot and pops keys (single operations under the GIL)."""
        self._generation += 1
        self._loading.clear()  # requests from now on start a load of their own
        for key, (_, value) in list(self._entries.items()):
            if stale(value):
                self._entries.pop(key, None)


def _quiet(task: asyncio.Future[Any]) -> None:
    """A background refresh that failed keeps the entry until its time to live; the next request tries again."""
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            logger.warning("gateway cache refresh failed", exc_info=task.exception())
