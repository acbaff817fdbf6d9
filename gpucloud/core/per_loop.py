"""Clients bound to an event loop (pooled HTTP and Redis connections belong to the loop that
opened them): one per running loop, forgotten with the loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, make: Callable[[], T], usable: Callable[[T], bool] = lambda _: True) -> None:
        self._make = make
        self._usable = usable
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        # The last loop asked about and its value: a server runs one loop, and the gateway asks
        # several times per request; a WeakKeyDictionary lookup builds a weak reference each time.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], T] | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop and self._usable(last[1]):
            return last[1]
        value = self._by_loop.get(loop)
        if value is None or not self._usable(value):
            value = self._make()
            self._by_loop[loop] = value
        self._last = (weakref.ref(loop), value)
        return value

    def current(self) -> T | None:
        """This loop's value, if one was made (none is made here)."""
        return self._by_loop.get(asyncio.get_running_loop())

    def values(self) -> list[T]:
        return list(self._by_loop.values())

    def clear(self) -> None:
        self._by_loop.clear()
        self._last = None
