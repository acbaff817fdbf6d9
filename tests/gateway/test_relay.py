"""The gateway's relay through the official OpenAI SDK against engine simulators: answers repaired
to OpenAI's schema, streams relayed chunk for chunk, usage metered to the token (cut streams too),
retry on a failing replica, least-busy balancing, the concurrency limit, other modalities."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from django.test import Client

from deployments.metrics import request_minutes_rollup
from deployments.models import RequestMinute
from gateway import app as gateway_app
from gateway import counters as metering
from gateway import routing
from tests.fakes.engine_box import Box
from tests.fakes.engine_server import Behaviour, Engine, EngineThread
from tests.support.gateway import ENGINE_KEY, counters, eventually, serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # the server thread must see committed rows
Engines = Callable[[], EngineThread]
MODEL = "smollm2-135m-instruct"


def sdk(server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=20)


def test_chat_json_is_repaired_to_openai_shape_and_metered(server: str, alice: Persona, engines: Engines) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    raw = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "one two three"}],
              "max_tokens": 5},
        headers={"Authorization": f"Bearer {alice.key}"},
    ).json()  # fmt: skip
    choice = raw["choices"][0]
    assert choice["logprobs"] is None and choice["message"]["refusal"] is None  # llama.cpp omits both
    assert choice["message"]["content"] == "The quick brown fox jumps"
    assert raw["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}

    reply = sdk(server, alice.key).chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.choices[0].message.content == "The quick brown"

    total = counters(deployment.pk, at_least=2)
    assert (total["requests"], total["prompt_tokens"], total["completion_tokens"]) == (2, 7 + 5, 5 + 3)
    assert total.get("errors", 0) == 0 and "ttft_count" not in total  # a JSON answer has no first token
    assert total["generation_ms_sum"] > 0


def test_stream_relays_every_chunk_and_strips_the_usage_it_asked_for(
    server: str, alice: Persona, engines: Engines
) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    client = sdk(server, alice.key)
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "a b"}], max_tokens=6, stream=True
        )
    )
    # 6 token chunks + the finish chunk, as the engine sends them without include_usage; no usage chunk.
    assert len(chunks) == 7
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The quick brown fox jumps over"
    assert chunks[-1].choices[0].finish_reason == "length"
    record = engine.engine.records[-1]
    assert eventually(lambda: record.finished), record

    with_usage = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "a b"}], max_tokens=4, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert (with_usage[-1].usage.prompt_tokens, with_usage[-1].usage.completion_tokens) == (6, 4)

    total = counters(deployment.pk, at_least=2)
    assert (total["prompt_tokens"], total["completion_tokens"]) == (6 + 6, 6 + 4)
    assert total["ttft_count"] == 2 and total["ttft_ms_sum"] > 0


def test_client_that_cuts_a_stream_is_billed_what_was_relayed_and_cancels_the_engine(
    server: str, alice: Persona, engines: Engines
) -> None:
    engine = engines()
    engine.engine.behaviour.gap_ms = 30
    deployment = serving_deployment(alice, [engine])
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "max_tokens": 200,
            "stream": True}  # fmt: skip
    received = 0
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=20,
                      headers={"Authorization": f"Bearer {alice.key}"}) as response:  # fmt: skip
        for line in response.iter_lines():
            if '"content"' in line:
                received += 1
            if received == 5:
                break
    record = engine.engine.records[-1]
    assert eventually(lambda: record.cut), record
    assert not record.finished  # the engine stopped generating
    assert record.completion_tokens < 20
    total = counters(deployment.pk, at_least=1)
    assert total["cut"] == 1
    assert total["completion_tokens"] == record.completion_tokens  # what the engine wrote, to the token
    assert total["prompt_tokens"] == record.prompt_tokens  # from the engine's running usage


def test_a_client_that_gives_up_on_a_json_answer_is_counted_as_cut_at_once(
    server: str, alice: Persona, engines: Engines
) -> None:
    engine = engines()
    engine.engine.behaviour.ttft_ms = 4000  # the answer would take 4 s
    deployment = serving_deployment(alice, [engine])
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v1/chat/completions", json=body, timeout=0.5,
                   headers={"Authorization": f"Bearer {alice.key}"})  # fmt: skip
    # The gateway stopped waiting for the engine when the client left, long before the answer.
    total = counters(deployment.pk, at_least=1, timeout=2.5)
    assert time.monotonic() - started < 3.5
    assert (total["requests"], total["cut"], total["rejected"], total.get("errors", 0)) == (1, 1, 1, 0)
    assert eventually(lambda: not any(routing.in_flight.values()))


def test_a_client_gone_before_the_watch_begins_is_noticed_when_it_does(
    server: str, alice: Persona, engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch for a leaving client starts WATCH_AFTER_SECONDS into a request (a task per request
    cost the hot path): a client that left before is noticed then, and the engine's 4-second answer
    is not waited for. (The watch starts later here than served, so that the client surely leaves
    after its body was read and before the watch, on a loaded machine too.)"""
    monkeypatch.setattr(gateway_app, "WATCH_AFTER_SECONDS", 1.0)
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    sdk(server, alice.key).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    engine.engine.behaviour.ttft_ms = 4000  # the key and route are cached now: the body is read at once
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}).encode()
    address = urlsplit(server)
    assert address.port is not None
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=5) as client:
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {alice.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.3)  # the gateway has read the body (closed before, the request is not served at all)
    # ...and closed before the watch begins
    total = counters(deployment.pk, at_least=2, timeout=2.5)
    assert time.monotonic() - started < 3.5
    assert (total["requests"], total["cut"], total["rejected"], total.get("errors", 0)) == (2, 1, 1, 0)
    assert eventually(lambda: not any(routing.in_flight.values()))


def cut_stream(server: str, key: str, path: str, body: dict[str, object], *, after_chunks: int) -> None:
    """Read `after_chunks` content chunks of a stream (0: only its headers), then hang up."""
    received = 0
    with httpx.stream("POST", f"{server}{path}", json={**body, "stream": True}, timeout=20,
                      headers={"Authorization": f"Bearer {key}"}) as response:  # fmt: skip
        assert response.status_code == 200
        for line in response.iter_lines() if after_chunks else ():
            received += '"content"' in line or '"text"' in line
            if received == after_chunks:
                break


CUT_CHAT = {"model": "smollm2-135m-instruct", "max_tokens": 200,
            "messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": [{"type": "text", "text": "one two three"}]}]}  # fmt: skip


@pytest.mark.parametrize(
    ("engine_kind", "behaviour", "after_chunks"),
    [
        # llama.cpp reports usage only at a stream's end: its /apply-template and /tokenize count the prompt
        ("llama.cpp", {"gap_ms": 30, "continuous_usage": False, "tokenizer": "llama.cpp"}, 3),
        # vLLM reports usage with every chunk; cut before the first one, its /tokenize counts the prompt
        ("vllm", {"ttft_ms": 3000, "continuous_usage": True, "tokenizer": "vllm"}, 0),
    ],
)
def test_a_stream_cut_before_the_engines_usage_counts_the_prompt_as_the_engine_does(
    server: str, alice: Persona, engines: Engines, engine_kind: str, behaviour: dict[str, object], after_chunks: int
) -> None:
    engine = engines()
    engine.engine.behaviour = Behaviour(**behaviour)  # type: ignore[arg-type]
    deployment = serving_deployment(alice, [engine])
    cut_stream(server, alice.key, "/v1/chat/completions", CUT_CHAT, after_chunks=after_chunks)
    completion = {"model": "smollm2-135m-instruct", "prompt": "once upon a time", "max_tokens": 200}
    cut_stream(server, alice.key, "/v1/completions", completion, after_chunks=after_chunks)
    records = engine.engine.records
    assert eventually(lambda: len(records) == 2 and all(r.cut for r in records)), records
    assert [r.prompt_tokens for r in records] == [3 + 3 + 2 * 4, 4]  # the engine's own count
    total = counters(deployment.pk, at_least=2)
    assert total["cut"] == 2
    assert total["prompt_tokens"] == 14 + 4
    assert total["completion_tokens"] == sum(r.completion_tokens for r in records)


def test_a_stream_cut_on_an_engine_without_a_tokenizer_counts_the_documented_estimate(
    server: str, alice: Persona, engines: Engines
) -> None:
    engine = engines()
    engine.engine.behaviour = Behaviour(gap_ms=30, continuous_usage=False, tokenizer="")
    deployment = serving_deployment(alice, [engine])
    cut_stream(server, alice.key, "/v1/chat/completions", CUT_CHAT, after_chunks=2)
    assert eventually(lambda: engine.engine.records[-1].cut)
    total = counters(deployment.pk, at_least=1)
    # one token per 4 characters ("You are terse." and "one two three": 27, so 7) + 4 per message
    assert (total["cut"], total["prompt_tokens"]) == (1, 7 + 2 * 4)
    assert total["completion_tokens"] == engine.engine.records[-1].completion_tokens


def test_completions_and_embeddings(server: str, alice: Persona, engines: Engines) -> None:
    chat = serving_deployment(alice, [engines()])
    embedder = serving_deployment(alice, [engines()], model="smollm2-135m-embedding")
    client = sdk(server, alice.key)
    text = client.completions.create(model="smollm2-135m-instruct", prompt="once upon", max_tokens=2)
    assert text.choices[0].text == "The quick" and text.usage and text.usage.prompt_tokens == 2
    streamed = list(client.completions.create(model=chat.pk, prompt="x", max_tokens=3, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == "The quick brown"
    vectors = client.embeddings.create(model="smollm2-135m-embedding", input=["a cat", "a dog sat"])
    assert [len(v.embedding) for v in vectors.data] == [8, 8] and vectors.usage.prompt_tokens == 5
    with pytest.raises(openai.BadRequestError, match="serves embeddings"):
        client.chat.completions.create(model="smollm2-135m-embedding", messages=[{"role": "user", "content": "x"}])
    assert counters(embedder.pk, at_least=2)["rejected"] == 1


def test_audio_and_image_routes_reach_engines_that_serve_them(server: str, alice: Persona, engines: Engines) -> None:
    serving_deployment(alice, [engines()], model="whisper-large-v3")
    serving_deployment(alice, [engines()], model="xtts-v2")
    serving_deployment(alice, [engines()], model="sdxl")
    client = sdk(server, alice.key)
    heard = client.audio.transcriptions.create(model="whisper-large-v3", file=("a.wav", b"RIFF1234", "audio/wav"))
    assert heard.text == "heard 8 bytes of whisper-large-v3"
    speech = client.audio.speech.create(model="xtts-v2", voice="alloy", input="hello there")
    assert speech.content == b"RIFFhello there"
    image = client.images.generate(model="sdxl", prompt="a red fox")
    assert image.data and image.data[0].b64_json == "aW1hZ2U="
    with pytest.raises(openai.BadRequestError, match="serves image generations"):
        client.audio.speech.create(model="sdxl", voice="alloy", input="x")


def test_a_failing_replica_is_retried_once_elsewhere_and_taken_out(
    server: str, alice: Persona, engines: Engines
) -> None:
    broken, healthy = engines(), engines()
    broken.engine.behaviour.fail_status = 500
    deployment = serving_deployment(alice, [broken, healthy])
    client = sdk(server, alice.key)
    for _ in range(4):
        reply = client.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
        assert reply.choices[0].message.content == "The quick"
    assert len(broken.engine.records) == 1  # tried once, then out of rotation
    assert len(healthy.engine.records) == 4
    assert counters(deployment.pk, at_least=4).get("errors", 0) == 0

    healthy.engine.behaviour.fail_status = 503  # every replica failing: the client hears it, once
    routing.routes_clear()
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="smollm2-135m-instruct", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    assert failed.value.body == {
        "message": "The model's engine failed: simulated engine failure.", "type": "server_error", "param": None,
        "code": "upstream_error",
    }  # fmt: skip


@pytest.mark.parametrize("stream", [True, False])
def test_a_replica_lost_before_anything_reached_the_client_is_replaced_by_another(
    server: str, alice: Persona, stream: bool
) -> None:
    """Issue 16: a spot machine preempted mid-request (its connections cut) after the engine took the
    request but before a token went out: the client gets its whole answer from another replica."""
    boxes = [Box(Engine(api_key=ENGINE_KEY, behaviour=Behaviour(ttft_ms=500))) for _ in range(2)]
    deployment = serving_deployment(alice, boxes)  # type: ignore[arg-type]  # a Box serves like an EngineThread
    answer: list[str] = []

    def ask() -> None:
        client = sdk(server, alice.key)
        messages: list[Any] = [{"role": "user", "content": "x"}]
        if stream:
            chunks = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3, stream=True)
            answer.append("".join(c.choices[0].delta.content or "" for c in chunks))
        else:
            answer.append(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3)
                          .choices[0].message.content or "")  # fmt: skip

    try:
        asking = threading.Thread(target=ask)
        asking.start()
        assert eventually(lambda: any(b.engine.records for b in boxes))
        lost, survivor = boxes if boxes[0].engine.records else boxes[::-1]
        lost.power_off()
        asking.join(15)
        assert answer == ["The quick brown"]
        # The engine marks its answer finished once its last write returns: the client may have it first.
        assert len(survivor.engine.records) == 1 and eventually(lambda: survivor.engine.records[0].finished)
        total = counters(deployment.pk, at_least=1)
        assert (total["requests"], total.get("errors", 0), total["completion_tokens"]) == (1, 0, 3)
    finally:
        for box in boxes:
            box.power_off()


def test_unreachable_engine_is_a_502_in_openai_shape(server: str, alice: Persona, engines: Engines) -> None:
    engine = engines()
    serving_deployment(alice, [engine])
    engine.__exit__()
    response = httpx.post(
        f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {alice.key}"},
        json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}]},
    )  # fmt: skip
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "could not be reached" in response.json()["error"]["message"]


def test_requests_go_to_the_replica_with_fewest_in_flight(server: str, alice: Persona, engines: Engines) -> None:
    first, second = engines(), engines()
    for engine in (first, second):
        engine.engine.behaviour.gap_ms = 100
    serving_deployment(alice, [first, second])
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    results: list[int] = []

    def call() -> None:
        results.append(httpx.post(f"{server}/v1/chat/completions", json=body, timeout=20,
                                  headers={"Authorization": f"Bearer {alice.key}"}).status_code)  # fmt: skip

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.03)
    for thread in threads:
        thread.join()
    assert results == [200] * 6
    assert (len(first.engine.records), len(second.engine.records)) == (3, 3)


def test_concurrency_limit_answers_429_with_retry_after(server: str, alice: Persona, engines: Engines) -> None:
    engine = engines()
    engine.engine.behaviour.gap_ms = 100
    deployment = serving_deployment(alice, [engine], concurrency_limit=2)
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    statuses: list[int] = []
    refusals: list[httpx.Response] = []

    def call() -> None:
        response = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=20,
                              headers={"Authorization": f"Bearer {alice.key}"})  # fmt: skip
        statuses.append(response.status_code)
        if response.status_code == 429:
            refusals.append(response)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 429, 429, 429]
    assert len(engine.engine.records) == 2  # nothing forwarded for the refused ones
    refusal = refusals[0]
    assert refusal.headers["retry-after"] == "1"
    assert refusal.json()["error"]["type"] == "rate_limit_exceeded"
    assert "limit of 2 concurrent requests" in refusal.json()["error"]["message"]
    # Slots come back: the next request is served.
    assert httpx.post(f"{server}/v1/chat/completions", json=body, timeout=20,
                      headers={"Authorization": f"Bearer {alice.key}"}).status_code == 200  # fmt: skip
    assert counters(deployment.pk, at_least=6)["rejected"] == 3


def test_rollup_writes_minutes_once_and_metrics_api_reports_them(server: str, alice: Persona, engines: Engines) -> None:
    deployment = serving_deployment(alice, [engines()])
    llm = sdk(server, alice.key)
    for _ in range(3):
        llm.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "a b c"}], max_tokens=4
        )
    counters(deployment.pk, at_least=3)
    request_minutes_rollup()
    request_minutes_rollup()  # again: the same rows, not doubled
    rows = list(RequestMinute.objects.filter(deployment=deployment))
    assert sum(r.requests for r in rows) == 3 and sum(r.completion_tokens for r in rows) == 12

    metrics = Client().get(f"/api/v1/deployments/{deployment.pk}/metrics?window=1h", **alice.auth).json()
    assert metrics["requests"] == 3 and metrics["prompt_tokens"] == 3 * 7 and metrics["completion_tokens"] == 12
    assert metrics["errors"] == 0 and metrics["latency_ms_p50"] is not None and metrics["replicas_ready"] == 1
    assert metrics["gpu_cost_usd"] > 0
    expected = metrics["gpu_cost_usd"] * 1_000_000 / (3 * 7 + 12)
    assert metrics["cost_per_1m_tokens_usd"] == pytest.approx(expected, rel=0.01)
    bad = Client().get(f"/api/v1/deployments/{deployment.pk}/metrics?window=2h", **alice.auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "window"


def test_requests_in_flight_are_published_for_the_autoscaler(server: str, alice: Persona, engines: Engines) -> None:

    engine = engines()
    engine.engine.behaviour.gap_ms = 400
    deployment = serving_deployment(alice, [engine])
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "max_tokens": 6}
    slow = threading.Thread(target=lambda: httpx.post(f"{server}/v1/chat/completions", json=body, timeout=20,
                                                      headers={"Authorization": f"Bearer {alice.key}"}))  # fmt: skip
    slow.start()
    seen: list[float] = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and not seen:
        if metering.store().in_flight().get(deployment.pk) == 1:
            seen.append(time.monotonic())
        time.sleep(0.1)
    slow.join()
    assert seen, "the request in flight was never published"
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and metering.store().in_flight().get(deployment.pk):
        time.sleep(0.1)
    assert metering.store().in_flight().get(deployment.pk, 0) == 0
