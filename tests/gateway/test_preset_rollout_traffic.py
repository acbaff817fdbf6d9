"""A preset rollout under a steady stream of requests through the gateway loses none: a replica
leaves routing before it stops, and stops only once what it was serving has finished; the
deployment never has fewer ready replicas than before, nor more than one machine beyond them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.db import connections
from django.test import Client

from deployments import preset_rollout as rollout
from deployments.models import Deployment
from fleet.models import Instance
from tests.fakes.engine_box import Box
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # the server thread must see committed rows
MODEL = "llama-3.1-8b-instruct"


@pytest.fixture
def cloud(settings: Any) -> Iterator[str]:
    gpus = {"mi300x": {"price": 2_590_000, "capacity": 2}, "h100": {"price": 4_410_000, "capacity": 2}}
    with sim_cloud.sole_provider(settings, gpus, gap_ms=15) as tag:  # streams of ~100 ms
        yield tag


class Traffic:
    """Clients streaming chat completions through the gateway, one after another each, until stopped."""

    def __init__(self, server: str, key: str, clients: int = 4) -> None:
        self.server, self.key = server, key
        self.outcomes: list[tuple[int, str]] = []  # (status, the end of the body) of every request
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 6, "stream": True}
        with httpx.Client(timeout=20) as http:
            while not self._stop.is_set():
                try:
                    with http.stream("POST", f"{self.server}/v1/chat/completions", json=body,
                                     headers={"Authorization": f"Bearer {self.key}"}) as response:  # fmt: skip
                        text = response.read().decode()
                    self.outcomes.append((response.status_code, text[-40:]))
                except httpx.HTTPError as exc:
                    self.outcomes.append((0, repr(exc)))

    @property
    def lost(self) -> list[tuple[int, str]]:
        return [o for o in self.outcomes if o[0] != 200 or not o[1].rstrip().endswith("data: [DONE]")]


class Sampler:
    """The fewest ready replicas seen while it runs (polled every 20 ms)."""

    def __init__(self, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        self.fewest_ready = 1_000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ready = Instance.objects.filter(deployment_id=self.deployment_id, state="ready").count()
                self.fewest_ready = min(self.fewest_ready, ready)
                time.sleep(0.02)
        finally:
            connections.close_all()


@pytest.mark.slow
def test_a_request_stream_loses_nothing_while_the_replicas_roll(
    server: str, alice: Persona, cloud: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under steady traffic the gateway always has something in flight: the drain ends at its timeout.
    monkeypatch.setattr(rollout, "DRAIN_TIMEOUT_SECONDS", rollout.DRAIN_SETTLE_SECONDS + 1.0)
    fund(alice.org, 50_000_000)
    client = Client()
    created = client.post("/api/v1/deployments", content_type="application/json", **alice.auth, data=json.dumps({
        "name": "chat", "model_id": MODEL, "gpu_type": "mi300x", "region": "atl1", "replicas": 2, "preset": "balanced",
    }))  # fmt: skip
    assert created.status_code == 201, created.content
    deployment = Deployment.objects.get(pk=created.json()["id"])
    assert deployment.status == "active"
    old_engines: dict[str, Box] = {m.spec.instance_id: m.engine for m in sim_cloud.running(cloud)}

    with Traffic(server, alice.key) as traffic, Sampler(deployment.pk) as sampler:
        time.sleep(1.0)
        # The tasks run eagerly here: the request returns when the whole rollout is done.
        response = client.patch(f"/api/v1/deployments/{deployment.pk}/preset", data=json.dumps({"preset": "speed"}),
                                content_type="application/json", **alice.auth)  # fmt: skip
        time.sleep(1.0)

    assert response.status_code == 200, response.content
    detail = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert detail["rollout"]["state"] == "done", detail["rollout"]
    assert len(traffic.outcomes) > 50 and traffic.lost == []
    assert sampler.fewest_ready >= 2 and sim_cloud.peak(cloud) == 3
    # Each old replica served until it left routing and finished every answer it had begun.
    for engine in old_engines.values():
        assert engine.engine.records and all(r.finished and not r.cut for r in engine.engine.records)
    new_engines = [m.engine for m in sim_cloud.running(cloud)]
    assert len(new_engines) == 2 and all(e.engine.records for e in new_engines)
    assert set(Instance.objects.filter(deployment=deployment, state="ready").values_list("gpu_type", flat=True)) == {
        "h100"
    }
