"""Live updates in the distributed topology: a real Celery worker, in its own process, confirms a
deployment's teardown, and the push it sends reaches the browser's socket held by this process
(the web side), carried by the Redis channel layer; another org's socket gets nothing.
Skipped without REDIS_URL (CI sets it): the in-memory layer cannot cross processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connections, transaction

from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentEvent, DeploymentStatus
from fleet.models import InstanceState
from fleet.tasks import instance_terminate_task
from fleet.transitions import instance_transition
from gpucloud.celery import app
from tests.support.live import Socket
from tests.support.pages import running, session_of
from tests.support.personas import Persona
from tests.support.processes import platform_env

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 30  # for the worker to start and for the push: generous, for a slow, busy CI machine
# Pages stay open a while before something changes: longer than one idle read of the Redis channel
# layer (channels_redis blocks 5 s per read; redis-py times a read out after 5 s unless configured),
# so a socket that dies while idle fails here rather than in users' browsers.
PAGE_OPEN_SECONDS = 6

pytestmark = [
    pytest.mark.skipif(
        not django_settings.REDIS_URL,
        reason="needs REDIS_URL: only the Redis channel layer carries pushes between processes",
    ),
    pytest.mark.django_db(transaction=True),  # the worker process sees committed rows only
]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    queue: str
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited ({self.process.returncode}):\n{self.log}")


@pytest.fixture
def worker(transactional_db: None, tmp_path: Path) -> Iterator[Worker]:
    """A Celery worker process consuming a queue of its own, so that no other test run's worker
    takes this test's task and this worker takes no one else's. Started first: its start-up
    overlaps the test's setup."""
    queue = f"test-live-{uuid.uuid4().hex[:12]}"
    command = [
        sys.executable, "-m", "celery", "-A", "gpucloud", "worker", "--pool=solo", "--concurrency=1",
        "-Q", queue, "-n", f"{queue}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-l", "info",
        "--", "worker.enable_remote_control=false",  # no pidbox queue left behind in the shared Redis
    ]  # fmt: skip
    log_path = tmp_path / "worker.log"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False  # conftest runs tasks in-process; this test's must travel
    with log_path.open("wb") as log:
        env = platform_env(tmp_path, CELERY_LOG_LEVEL="INFO")  # the test reads its "task succeeded" line
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield Worker(process, queue, log_path)
        finally:
            app.conf.task_always_eager = eager
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            redis.Redis.from_url(django_settings.REDIS_URL).delete(queue, f"_kombu.binding.{queue}")


def deleted_by_the_user(deployment: Deployment) -> str:
    """What deployment_delete records in the web process (stopping, its instance terminating);
    the teardown task it would enqueue is left for the test to send to its worker."""
    with transaction.atomic():
        deployment_transition(deployment, DeploymentStatus.STOPPING, "Deleted by the user.")
        instance = deployment.instances.get()
        instance_transition(instance, InstanceState.TERMINATING, "Deployment deleted.")
    return instance.pk


async def worker_ready(worker: Worker) -> None:
    """Waits for the worker's start-up, so the push's wait below measures the push alone."""
    deadline = time.monotonic() + WAIT_SECONDS
    while " ready." not in worker.log:
        worker.check_alive()
        assert time.monotonic() < deadline, f"the worker not ready after {WAIT_SECONDS} s:\n{worker.log}"
        await asyncio.sleep(0.1)


def check_open(socket: Socket) -> None:
    if socket.future.done():  # the consumer returned or raised: the browser's socket is gone
        error = socket.future.exception()
        cause = f"{type(error).__module__}.{type(error).__qualname__}: {error}" if error else "the consumer returned"
        raise AssertionError(f"the page's socket closed while open and idle: {cause}")


async def drain(socket: Socket) -> None:
    while not await socket.receive_nothing(timeout=0.1):
        await socket.receive_json()


async def next_push(socket: Socket, worker: Worker) -> dict[str, Any]:
    """The socket's next message (polled: receive_output's timeout would cancel the consumer)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while await socket.receive_nothing(timeout=0.2, interval=0.02):
        worker.check_alive()
        assert time.monotonic() < deadline, f"no push within {WAIT_SECONDS} s; the worker's log:\n{worker.log}"
    return await socket.receive_json()


async def worker_change_reaches(
    alice_session: str, charlie_session: str, instance_id: str, worker: Worker
) -> tuple[dict[str, Any], str]:
    mine, theirs = Socket(alice_session), Socket(charlie_session)
    try:
        assert (await mine.connect())[0] and (await theirs.connect())[0]
        opened = time.monotonic()
        await worker_ready(worker)
        await asyncio.sleep(max(0.0, PAGE_OPEN_SECONDS - (time.monotonic() - opened)))
        for socket in (mine, theirs):
            check_open(socket)
            await drain(socket)  # what a page gets on connecting, if anything: sent before any change
        task = instance_terminate_task.apply_async((instance_id,), queue=worker.queue)
        pushed = await next_push(mine, worker)
        assert await theirs.receive_nothing(timeout=0.5)
        await mine.close()
        await theirs.close()
    finally:
        await sync_to_async(connections.close_all)()
    return pushed, task.id


def logged_by(worker: Worker, line: str) -> bool:
    """Whether the worker logs `line` (soon: it logs a task's outcome after the task's push)."""
    deadline = time.monotonic() + 10
    while line not in worker.log and time.monotonic() < deadline:
        time.sleep(0.1)
    return line in worker.log


@pytest.mark.usefixtures("catalog")
def test_a_status_change_in_a_celery_worker_reaches_the_orgs_open_pages_through_redis(
    settings: Any, alice: Persona, charlie: Persona, worker: Worker
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    deployment = running(alice)
    instance_id = deleted_by_the_user(deployment)  # its "stopping" push finds no page open yet
    pushed, task_id = asyncio.run(worker_change_reaches(session_of(alice), session_of(charlie), instance_id, worker))
    assert pushed["type"] == "deployment.changed" and pushed["deployment_id"] == deployment.pk
    assert pushed["status"] == "stopped"
    assert f'id="status-{deployment.pk}"' in pushed["html"] and ">Stopped<" in pushed["html"]
    assert pushed["rate_micros"] == 0 and pushed["balance"]["rate_micros"] == 0  # the page's tickers stop
    # The change was made in the worker, not here: only the task it ran makes it.
    assert logged_by(worker, f"instance_terminate_task[{task_id}] succeeded")
    stopped = DeploymentEvent.objects.get(deployment=deployment, to_status=DeploymentStatus.STOPPED)
    assert stopped.reason == "All instances terminated."
