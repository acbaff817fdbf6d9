"""The local driver against real engine processes (llama.cpp via xllamacpp, SmolLM2 GGUF)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from catalog.data import SMOLLM2_GGUF
from fleet.providers.base import InstanceSpec, InstanceState, ProviderError
from fleet.providers.local.driver import LocalDriver


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[LocalDriver]:
    config = {"slots": 1, "instances_dir": str(tmp_path), "threads": 1, "tag": "test-tag"}
    driver = LocalDriver(slug="local", config=config)
    yield driver
    for instance in driver.list_instances("test-tag") + driver.list_instances("other-tag"):
        driver.terminate(instance.provider_instance_id)


def spec(instance_id: str, tag: str = "test-tag") -> InstanceSpec:
    return InstanceSpec(
        instance_id=instance_id,
        tag=tag,
        engine="llama.cpp",
        model={"gguf": SMOLLM2_GGUF},
        served_model_name="smollm2-135m-instruct",
        api_key="k-" + instance_id,
        gpu_type="cpu",
    )


def wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never became healthy")


def test_launch_serves_real_inference_behind_its_key_then_terminates(driver: LocalDriver) -> None:
    offer = driver.offers()[0]
    assert (offer.gpu_type, offer.region, offer.available, offer.price_per_hour_micros) == ("cpu", "local", 1, 50_000)
    instance = driver.launch(spec("inst_a"), offer)
    assert instance.state == InstanceState.RUNNING
    assert driver.launch(spec("inst_a"), offer).provider_instance_id == instance.provider_instance_id  # idempotent
    url = driver.endpoint("inst_a")
    wait_healthy(url)
    body = {"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code == 401
    answer = httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer k-inst_a"}, timeout=60
    ).json()
    assert answer["choices"][0]["message"]["content"].strip()
    assert [i.instance_id for i in driver.list_instances("test-tag")] == ["inst_a"]
    assert driver.list_instances("other-tag") == []
    assert driver.offers()[0].available == 0
    with pytest.raises(ProviderError) as full:
        driver.launch(spec("inst_b"), offer)
    assert full.value.no_capacity
    assert any("serving on 127.0.0.1" in line for line in driver.logs("inst_a"))

    followed = driver.follow_logs("inst_a")
    assert any("serving on 127.0.0.1" in next(followed) for _ in range(200))
    driver.terminate("inst_a")
    assert any("stopping" in line for line in followed)  # follows to the end, then stops
    driver.terminate("inst_a")  # idempotent
    assert driver.status("inst_a").state == InstanceState.TERMINATED
    assert driver.list_instances("test-tag") == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_non_gguf_engines_are_refused_permanently(driver: LocalDriver) -> None:
    vllm = InstanceSpec(
        instance_id="inst_v", tag="test-tag", engine="vllm", model={"hf_repo": "x"}, served_model_name="x",
        api_key="k", gpu_type="cpu",
    )  # fmt: skip
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm, driver.offers()[0])
    assert refused.value.permanent and driver.list_instances("test-tag") == []


def test_embedding_engine_serves_mean_pooled_vectors(driver: LocalDriver) -> None:
    embedding = InstanceSpec(
        instance_id="inst_e", tag="test-tag", engine="llama.cpp", model={"gguf": SMOLLM2_GGUF},
        served_model_name="smollm2-135m-embedding", api_key="k-e", gpu_type="cpu", engine_args={"embedding": True},
    )  # fmt: skip
    driver.launch(embedding, driver.offers()[0])
    url = driver.endpoint("inst_e")
    wait_healthy(url)
    response = httpx.post(
        f"{url}/v1/embeddings", json={"input": ["hello", "world"]}, headers={"Authorization": "Bearer k-e"}, timeout=30
    ).json()
    vectors = [item["embedding"] for item in response["data"]]
    assert len(vectors) == 2 and len(vectors[0]) == 576 and vectors[0] != vectors[1]


def test_a_launched_engine_is_listed_and_terminated_as_soon_as_launch_returns(driver: LocalDriver) -> None:
    """Popen returns while the child is still in exec, before /proc shows its command line (by which
    the driver finds engines): launch waits for it, or a reconciler right after would miss the engine
    (and not reap it) and a terminate would not stop it."""
    driver.launch(spec("inst_now"), driver.offers()[0])
    pid = json.loads((driver.instances_dir / "inst_now" / "instance.json").read_text())["pid"]
    assert "inst_now" in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert [i.instance_id for i in driver.list_instances("test-tag")] == ["inst_now"]
    driver.terminate("inst_now")
    assert driver.list_instances("test-tag") == []
    assert driver.status("inst_now").state == InstanceState.TERMINATED


STOPS = 15
STOP_BOUND_SECONDS = 6.0  # generous for a loaded machine; the driver's own fallback is 3 s of grace


@pytest.mark.slow
def test_an_engine_stopped_at_any_moment_right_after_start_is_gone_promptly_and_frees_its_slot(
    driver: LocalDriver,
) -> None:
    """Issue 15 §3: engines sent SIGTERM while llama.cpp was still loading hung in its destructor
    ("waiting for main loop exit", a loop that had not started) until the 10 s SIGKILL fallback,
    keeping their slot. Stops from 0 to 1 s after the launch, the window where the model loads."""
    late = []
    for step in range(STOPS):
        instance_id = f"inst_s{step}"
        driver.launch(spec(instance_id), driver.offers()[0])
        time.sleep(step / (STOPS - 1))
        asked = time.monotonic()
        driver.terminate(instance_id)
        took = time.monotonic() - asked
        gone = driver.status(instance_id).state == InstanceState.TERMINATED
        if took > STOP_BOUND_SECONDS or not gone or driver.offers()[0].available != 1:
            late.append(f"{instance_id} stopped {step / (STOPS - 1):.2f} s after launch: {took:.1f} s, gone={gone}")
    assert late == []


def test_a_wedged_engine_is_killed_with_its_process_group_within_the_bound(driver: LocalDriver) -> None:
    """An engine that does not act on SIGTERM (here: stopped once serving, its handler in place) is
    SIGKILLed after the grace."""
    driver.launch(spec("inst_w"), driver.offers()[0])
    wait_healthy(driver.endpoint("inst_w"))
    pid = json.loads((driver.instances_dir / "inst_w" / "instance.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    asked = time.monotonic()
    driver.terminate("inst_w")
    assert time.monotonic() - asked < STOP_BOUND_SECONDS
    assert driver.status("inst_w").state == InstanceState.TERMINATED and driver.offers()[0].available == 1
    assert not runs(pid)


def runs(pid: int) -> bool:
    """Whether the process runs (a zombie does not: a killed engine's leader waits for its threads)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def meta_of(driver: LocalDriver, instance_id: str) -> dict[str, int]:
    return dict(json.loads((driver.instances_dir / instance_id / "instance.json").read_text()))


def test_a_killed_engine_ended_when_its_process_did(driver: LocalDriver) -> None:
    """Issue 15 §2: the end was the engine log's last write (its start-up lines), not its death."""
    driver.launch(spec("inst_k"), driver.offers()[0])
    wait_healthy(driver.endpoint("inst_k"))
    time.sleep(1.5)  # alive, writing nothing
    pid = meta_of(driver, "inst_k")["pid"]
    killed = datetime.now(UTC)  # before the kill: the witness may record the death before this thread runs again
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while driver.list_instances("test-tag") and time.monotonic() < deadline:  # the kernel finishes it
        time.sleep(0.05)
    status = driver.status("inst_k")
    assert status.state == InstanceState.TERMINATED and status.ended_at is not None
    assert timedelta(0) <= status.ended_at - killed <= timedelta(seconds=2)


def test_an_engine_gone_without_its_witness_ended_when_first_seen_gone(driver: LocalDriver) -> None:
    """The machine went down with both (the witness wrote nothing): the first look that finds the
    engine gone sets its end, and every later look agrees."""
    driver.launch(spec("inst_m"), driver.offers()[0])
    meta = meta_of(driver, "inst_m")
    os.kill(meta["witness_pid"], signal.SIGKILL)
    os.kill(meta["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while driver.list_instances("test-tag") and time.monotonic() < deadline:
        time.sleep(0.05)
    looked = datetime.now(UTC)
    first = driver.status("inst_m").ended_at
    assert first is not None and timedelta(0) <= first - looked <= timedelta(seconds=3)
    time.sleep(0.1)
    assert driver.status("inst_m").ended_at == first
