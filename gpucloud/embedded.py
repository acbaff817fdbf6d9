"""The embedded topology's single process: uvicorn serving the ASGI app, with a Celery
worker and Celery beat running as threads of the same process.

Why one process: the embedded broker (kombu `memory://`) and channel layer are in-memory,
so a task enqueued by a web request, and a websocket push made by a task, only meet
their consumer inside this process. The distributed topology runs the same code as
separate processes over Redis instead.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn
from celery import beat
from celery.worker import WorkController
from celery.worker import state as worker_state

from deployments.metrics import request_minutes_rollup
from deployments.traffic import LocalStore, store
from fleet.offers import offers_refresh_all
from fleet.provisioning import local_instances_stop_all
from gpucloud.celery import app as celery_app

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 15.0


class _Worker(WorkController):
    """A WorkController that tells the starting thread when it consumes."""

    def __init__(self, **kwargs: object) -> None:
        self.ready = threading.Event()
        super().__init__(**kwargs)

    def on_consumer_ready(self, consumer: object) -> None:
        self.ready.set()


@dataclass
class BackgroundServices:
    """A Celery worker and beat running as daemon threads of this process."""

    concurrency: int = 2
    worker: _Worker | None = None
    worker_thread: threading.Thread | None = None
    beat_thread: threading.Thread | None = None

    def start(self) -> None:
        celery_app.finalize()
        celery_app.set_current()
        celery_app.set_default()
        self.worker = _Worker(
            app=celery_app,
            hostname="embedded@localhost",
            pool="threads",
            concurrency=self.concurrency,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        self.worker_thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self.worker_thread.start()
        if not self.worker.ready.wait(timeout=30):
            raise RuntimeError("The embedded Celery worker did not start within 30 s")
        # In-memory scheduler: the embedded process is the only beat, and restarting it
        # simply runs every periodic task once more (they are idempotent by contract).
        self.beat_thread = beat.EmbeddedService(celery_app, thread=True, scheduler_cls="celery.beat:Scheduler")
        self.beat_thread.start()
        logger.info("Embedded Celery worker (%d threads) and beat started", self.concurrency)

    def stop(self) -> None:
        if self.beat_thread is not None:
            self.beat_thread.stop()  # type: ignore[attr-defined]
            self.beat_thread.join(SHUTDOWN_TIMEOUT_SECONDS)
        if self.worker_thread is not None:
            # The consumer loop checks this flag and performs a warm shutdown.
            worker_state.should_terminate = 0
            self.worker_thread.join(SHUTDOWN_TIMEOUT_SECONDS)
            worker_state.should_terminate = None
            if self.worker_thread.is_alive():
                logger.warning("The embedded Celery worker did not stop within %.0f s", SHUTDOWN_TIMEOUT_SECONDS)
        logger.info("Embedded Celery worker and beat stopped")


class PortInUse(RuntimeError):
    pass


def serve(*, host: str, port: int, background: bool = True) -> None:
    """Serve until SIGINT/SIGTERM, then stop the background threads; nothing is left running.
    A taken port stops it before anything starts: its shutdown stops this machine's engines, which
    may be another gpucloud's still serving there."""
    check_port_free(host, port)
    _refresh_offers()
    services = BackgroundServices()
    if background:
        services.start()
    previous = _sigterm_as_ctrl_c()
    try:
        # lifespan: the gateway flushes its counters and closes its engine connections on shutdown.
        config = uvicorn.Config("gpucloud.asgi:application", host=host, port=port, lifespan="on", log_level="info")
        uvicorn.Server(config).run()  # installs its own SIGINT/SIGTERM handlers; returns on shutdown
    finally:
        services.stop()
        _keep_request_minutes()
        _stop_local_engines()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_ctrl_c() -> signal.Handlers | Callable[..., object] | int | None:
    """uvicorn shuts down on SIGTERM, then raises it again under the handler it found; the default
    one ends the process before the worker and the engines are stopped. This one is installed instead: it
    raises KeyboardInterrupt as Ctrl-C does, and serve's cleanup runs. Returns the handler it
    replaced (None off the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"{host}:{port} is taken ({exc.strerror}): is gpucloud already running there? "
                "Stop it, or choose another port (make run PORT=8001)."
            ) from None


def _refresh_offers() -> None:
    """Pages read stored offers, refreshed by beat only after its first interval: ask every provider
    now, so the catalog offers GPUs from the first request (offers stored by an earlier run may have
    expired, and the local machine's free slots changed when it stopped)."""

    for slug, stored in offers_refresh_all().items():
        if stored is None:
            logger.warning("Offers of provider %s not refreshed at start; beat asks again", slug)


def _keep_request_minutes() -> None:
    """Without Redis the gateway's per-minute request counters live in this process until the beat
    copies them to the database (every minute): copy them once more on the way out, so a restart
    loses no metrics. With Redis they outlive the process and the next copy takes them."""

    if not isinstance(store(), LocalStore):
        return
    try:
        request_minutes_rollup()
    except Exception:  # the database is going too: say so, do not hide the shutdown
        logger.warning("Request metrics of the last minute were not saved", exc_info=True)


def _stop_local_engines() -> None:
    """Engines are separate processes: stopping the platform must not leave them running (or billing)."""

    stopped = local_instances_stop_all()
    if stopped:
        logger.info("Stopped %d local engine(s); their deployments restart with the platform", stopped)
