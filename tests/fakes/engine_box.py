"""Servers of the test clouds, each an aiohttp app on a loopback address and port in a thread of its
own: `AppThread` (a cloud's API) and `Box`, one machine running an engine simulator
(tests/fakes/engine_server.py). Powering a box off ends it the way a terminated machine ends:
whatever it was serving is cut at once."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from tests.fakes.engine_server import Engine


class AppThread:
    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"the server on {host}:{port} did not start")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def power_off(self) -> None:
        """Stop at once, cutting every open connection (again: nothing happens)."""
        if self._loop.is_closed():
            return

        def cut() -> None:
            server = self._runner.server
            for handler in server.connections if server else []:
                if handler.transport is not None:
                    handler.transport.abort()
            self._loop.stop()

        self._loop.call_soon_threadsafe(cut)
        self._thread.join(5)


class Box(AppThread):
    """One machine running an engine simulator."""

    def __init__(self, engine: Engine, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine
        super().__init__(engine.app(), host=host, port=port)
