"""The gateway's cache forgets what an announced change makes stale, including a value a load read
before the change and returns after it (neither stored nor handed to requests that came later)."""

from __future__ import annotations

import asyncio

from gateway.ttl_cache import TtlCache


def test_forget_where_drops_matching_entries_and_detaches_a_load_in_progress() -> None:
    async def scenario() -> None:
        cache: TtlCache[str, str] = TtlCache(3600)
        cache.put("a", "alice:old")
        cache.put("c", "charlie")
        release = asyncio.Event()
        loads: list[str] = []

        async def slow_load() -> str:
            loads.append("slow")
            await release.wait()
            return "bob:old"  # read before the change

        async def fresh_load() -> str:
            loads.append("fresh")
            return "bob:new"

        early = asyncio.ensure_future(cache.get("b", slow_load))
        await asyncio.sleep(0)
        cache.forget_where(lambda value: value.startswith(("alice", "bob")))
        late = asyncio.ensure_future(cache.get("b", fresh_load))  # after the change: its own load
        await asyncio.sleep(0)
        release.set()
        assert await early == "bob:old"  # it asked before the change
        assert await late == "bob:new"
        assert loads == ["slow", "fresh"]
        assert await cache.get("b", fresh_load) == "bob:new"  # the old read was not stored
        assert await cache.get("a", fresh_load) == "bob:new"  # forgotten: loaded again
        assert await cache.get("c", fresh_load) == "charlie"  # untouched

    asyncio.run(scenario())
