"""Gateway benchmark: what the /v1 hop adds over calling the engine directly, measured side by
side in the same run, interleaved, from the same client.

    .venv/bin/python bench/gateway_bench.py --quick      # about a minute; the last line is one JSON object
    .venv/bin/python bench/gateway_bench.py              # the full run the README quotes (a few minutes)

What runs: the engine simulator (tests/fakes/engine_server.py, an OpenAI-compatible server with
configurable time to first token and inter-token delay) in one process; the platform's ASGI app
under uvicorn (uvloop + httptools, one worker, exactly as `uvicorn gpucloud.asgi:application`
serves it) in another, in the embedded topology on a throwaway SQLite database; a bare
pass-through proxy (bench/bare_proxy.py: aiohttp relay under the same uvicorn, nothing else) in a
third; this process is the load generator (aiohttp on uvloop). Every figure pairs a direct call to
the simulator with the same call through the gateway; "added" is the difference of the same
statistic. Sections 1 and 2 also run the bare proxy, interleaved with the other two paths: the
floor for any Python hop on this machine, so what the gateway adds beyond it is its own work.

1. Added latency, non-streaming, concurrency 1: alternating direct / gateway requests (16-token
   answers, no engine delay); added p50 and p99 (goals: <= 1 ms, <= 2 ms).
2. Streaming 64 chunks 20 ms apart: rounds of 8 streams per path at once, starting within one 20 ms
   gap, alternating paths; added TTFT p99 (request sent -> first token chunk) and added
   inter-chunk gap p99 (goals <= 2 ms and <= 0.5 ms); the number of SSE events must be identical
   on both paths (the gateway asks the engine for usage and strips it again).
3. Most requests per second one gateway process sustains with added p99 <= 5 ms: open-loop steps
   at fixed rates (latency counted from each request's scheduled start, so a backlog shows), the
   direct path at the same rate just before; goal >= 200.
4. Most concurrent streams without stalls: S streams at once (64 chunks, 20 ms apart); a stall is
   a stream that fails, ends short, or has a gap over 250 ms. The direct path is run at the same S
   as the reference (on 2 cores the load generator and the engine share the CPU too); goal >= 256.
5. Metering accuracy: requests of every kind (JSON, streams, streams with include_usage, streams
   the client cuts after a random number of chunks, text completions), each through its own
   deployment so the gateway's per-deployment metrics isolate it; billed prompt and completion
   tokens must equal what the engine reports having served, for 100% of requests. Run twice: with
   the engine reporting usage in every chunk (vLLM's continuous_usage_stats) and only at a stream's
   end (llama.cpp), where a cut stream's prompt is counted by the engine's tokenizer.
6. Full run only (or --smollm2): tokens/s of the real SmolLM2-135M engine (llama.cpp, CPU)
   through the gateway and direct, streamed, one request at a time; then 13 streams cut after a
   few tokens, their billed prompt tokens against llama.cpp's own count of the same prompts.
7. Closed-loop throughput (issue 19): 1, 16 and 64 clients, each sending its next request when
   the previous one answered (section 1's request; the engine answers in 20 ms), for a fixed time,
   through the bare proxy (the floor) and the gateway in alternating rounds. Both servers are pinned
   to the same one core (the machine's last; every thread, as `taskset -a`), the engine and this
   load generator to the others. Prints requests per second, p50/p99 and each server's CPU time
   per request side by side with the ratios; goals: gateway rps >= 0.9x the floor's at 16 and 64
   clients, p99 <= 1.5x. Only same-run ratios mean anything on a shared machine. With --contended a
   busy process shares the hops' core (as other work does on a shared machine): throughput then
   follows each hop's CPU per request.

    .venv/bin/python bench/gateway_bench.py --quick --only 7            # section 7 alone, under a minute
    .venv/bin/python bench/gateway_bench.py --quick --only 7 --profile /tmp/prof   # where the CPU goes:
        # both servers under cProfile (bench/profiled_gateway.py), /tmp/prof/gateway.prof and floor.prof
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
PYTHON = sys.executable
ENGINE_KEY = "engine-secret"
DIRECT, GATEWAY, BARE = "direct", "gateway", "bare"
PATHS = [DIRECT, GATEWAY, BARE]
STALL_GAP_S = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- the platform under test ---------------------------------------------------------------


@dataclass
class Platform:
    var_dir: str
    gateway: str = ""
    bare: str = ""
    engine: str = ""
    key: str = ""
    deployment_id: str = ""
    accuracy_ids: list[str] = field(default_factory=list)
    smollm2_id: str = ""
    gateway_pid: int = 0
    bare_pid: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(GPUCLOUD_VAR_DIR=self.var_dir, DJANGO_SETTINGS_MODULE="gpucloud.settings", PYTHONPATH=str(REPO_ROOT))
        return env

    def start(self, args: list[str], ready_url: str) -> int:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=self.env(), stdout=subprocess.DEVNULL)  # noqa: S603
        self.processes.append(process)
        deadline = time.monotonic() + 60
        import urllib.request

        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(ready_url, timeout=1)  # noqa: S310 - loopback
                return process.pid
            except Exception:
                if process.poll() is not None:
                    raise RuntimeError(f"{args} exited with {process.returncode}") from None
                time.sleep(0.1)
        raise RuntimeError(f"{ready_url} did not answer in 60 s")

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def seed_user(platform: Platform) -> tuple[Callable[..., Any], Any]:
    """The throwaway database migrated and its catalog loaded, a user with an account key, and
    `deploy(**options)`: a deployment of that user served at `endpoint` (the simulator process's
    url; change its port to serve another engine)."""
    for name in ("DATABASE_URL", "REDIS_URL"):  # the servers it starts use the throwaway SQLite; so must it
        os.environ.pop(name, None)
    os.environ.update(platform.env())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("load_catalog", verbosity=0)
    from tests.fakes.engine_server import EngineThread
    from tests.support.gateway import serving_deployment
    from tests.support.personas import make_persona

    persona = make_persona("bench@example.com", org_name="Bench")
    platform.key = persona.key
    endpoint = EngineThread()  # only its url is used: the simulator process listens there
    endpoint.port = int(platform.engine.rsplit(":", 1)[1])
    return functools.partial(serving_deployment, persona, [endpoint]), endpoint


def seed(platform: Platform, accuracy_requests: int, smollm2_url: str | None) -> None:
    """A user with an account key, a deployment served by the simulator, one deployment per
    accuracy request (all served by the same simulator), and optionally one served by SmolLM2."""
    deploy, endpoint = seed_user(platform)
    platform.deployment_id = deploy().pk
    platform.accuracy_ids = [deploy(status="active").pk for _ in range(accuracy_requests)]
    if smollm2_url:
        endpoint.port = int(smollm2_url.rsplit(":", 1)[1])
        platform.smollm2_id = deploy().pk


# --- the load generator ----------------------------------------------------------------------


class Client:
    def __init__(self, platform: Platform) -> None:
        import aiohttp

        self.platform = platform
        self.session = aiohttp.ClientSession(
            # Under the engines' 5 s keep-alive (llama.cpp closes idle connections after it).
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    def target(self, via: str) -> tuple[str, dict[str, str]]:
        """Where a path sends its requests: the gateway, the bare proxy, or the engine directly."""
        if via == GATEWAY:
            return self.platform.gateway, {"Authorization": f"Bearer {self.platform.key}"}
        if via == BARE:
            return self.platform.bare, {"Authorization": f"Bearer {ENGINE_KEY}"}
        return self.platform.engine, {"Authorization": f"Bearer {ENGINE_KEY}"}

    async def json_call(self, via: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> float:
        base, headers = self.target(via)
        started = time.perf_counter()
        async with self.session.post(f"{base}{path}", json=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status} from {via}")
        return time.perf_counter() - started

    async def stream(
        self, via: str, body: dict[str, Any], *, cut_after: int | None = None, base: str | None = None
    ) -> StreamResult:
        default_base, headers = self.target(via)
        result = StreamResult()
        started = time.perf_counter()
        last = started
        async with self.session.post(
            f"{base or default_base}/v1/chat/completions", json=body, headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {await response.text()}")
            buffer = b""
            async for data in response.content.iter_any():
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                now = time.perf_counter()
                for event in events:
                    result.events += 1
                    if b'"content"' in event or b'"text"' in event:
                        result.tokens += 1
                        if result.ttft is None:
                            result.ttft = now - started
                        else:
                            result.gaps.append(now - last)
                        last = now
                    if event.startswith(b"data: {") and b'"usage"' in event:
                        usage = json.loads(event[6:]).get("usage")
                        if usage:
                            result.usage = usage
                if cut_after is not None and result.tokens >= cut_after:
                    result.cut = True
                    break
        result.total = time.perf_counter() - started
        return result

    async def close(self) -> None:
        await self.session.close()


@dataclass
class StreamResult:
    events: int = 0
    tokens: int = 0
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    total: float = 0.0
    usage: dict[str, int] | None = None
    cut: bool = False


CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "one two three four"}]}  # + "model": the deployment


async def set_engine(client: Client, **behaviour: float | bool) -> None:
    async with client.session.post(f"{client.platform.engine}/_sim/behaviour?reset=1", json=behaviour) as response:
        response.raise_for_status()


# 1 ---------------------------------------------------------------------------------------------


async def added_latency(client: Client, pairs: int) -> dict[str, float]:
    await set_engine(client, tokens=16)
    body = {**CHAT, "max_tokens": 16}
    for _ in range(200):  # warm every path (connection pools, caches)
        for via in PATHS:
            await client.json_call(via, body)
    times: dict[str, list[float]] = {via: [] for via in PATHS}
    for i in range(pairs):
        for via in PATHS[i % 3 :] + PATHS[: i % 3]:  # each path first in turn
            times[via].append(await client.json_call(via, body))
    direct, gateway, bare = times[DIRECT], times[GATEWAY], times[BARE]
    return {
        "direct_p50_ms": ms(pct(direct, 0.5)),
        "direct_p99_ms": ms(pct(direct, 0.99)),
        "gateway_p50_ms": ms(pct(gateway, 0.5)),
        "gateway_p99_ms": ms(pct(gateway, 0.99)),
        "added_p50_ms": ms(pct(gateway, 0.5) - pct(direct, 0.5)),
        "added_p99_ms": ms(pct(gateway, 0.99) - pct(direct, 0.99)),
        "added_paired_median_ms": ms(statistics.median(g - d for g, d in zip(gateway, direct, strict=True))),
        "bare_proxy_added_p50_ms": ms(pct(bare, 0.5) - pct(direct, 0.5)),
        "bare_proxy_added_p99_ms": ms(pct(bare, 0.99) - pct(direct, 0.99)),
        "pairs": pairs,
    }


# 2 ---------------------------------------------------------------------------------------------


async def streaming(client: Client, rounds: int, per_round: int) -> dict[str, Any]:
    await set_engine(client, ttft_ms=20, gap_ms=20)
    body = {**CHAT, "max_tokens": 64, "stream": True}
    results: dict[str, list[StreamResult]] = {via: [] for via in PATHS}

    async def after(delay: float, via: str) -> StreamResult:
        await asyncio.sleep(delay)
        return await client.stream(via, body)

    for _ in range(rounds):
        paths = [via for i in range(per_round) for via in PATHS[i % 3 :] + PATHS[: i % 3]]
        # Streams start spread over one 20 ms gap, taking turns between paths, as independent
        # clients arrive; a burst of simultaneous starts would measure queueing in the engine.
        spacing = 0.020 / len(paths)
        done = await asyncio.gather(*(after(k * spacing, via) for k, via in enumerate(paths)))
        for via, result in zip(paths, done, strict=True):
            results[via].append(result)
    ttft = {via: [r.ttft for r in rs if r.ttft is not None] for via, rs in results.items()}
    gaps = {via: [g for r in rs for g in r.gaps] for via, rs in results.items()}
    events = {via: {r.events for r in rs} for via, rs in results.items()}

    def added(via: str, values: dict[str, list[float]], q: float) -> float:
        return ms(pct(values[via], q) - pct(values[DIRECT], q))

    return {
        "streams_per_path": len(results[DIRECT]),
        "direct_ttft_p99_ms": ms(pct(ttft[DIRECT], 0.99)),
        "gateway_ttft_p99_ms": ms(pct(ttft[GATEWAY], 0.99)),
        "added_ttft_p50_ms": added(GATEWAY, ttft, 0.5),
        "added_ttft_p99_ms": added(GATEWAY, ttft, 0.99),
        "direct_gap_p99_ms": ms(pct(gaps[DIRECT], 0.99)),
        "gateway_gap_p99_ms": ms(pct(gaps[GATEWAY], 0.99)),
        "added_gap_p50_ms": added(GATEWAY, gaps, 0.5),
        "added_gap_p99_ms": added(GATEWAY, gaps, 0.99),
        "bare_proxy_added_ttft_p50_ms": added(BARE, ttft, 0.5),
        "bare_proxy_added_ttft_p99_ms": added(BARE, ttft, 0.99),
        "bare_proxy_added_gap_p99_ms": added(BARE, gaps, 0.99),
        "events_direct": sorted(events[DIRECT]),
        "events_gateway": sorted(events[GATEWAY]),
        "chunk_counts_identical": events[DIRECT] == events[GATEWAY] and len(events[DIRECT]) == 1,
    }


# 3 ---------------------------------------------------------------------------------------------


async def open_loop(client: Client, via: str, rate: float, seconds: float) -> dict[str, float]:
    body = {**CHAT, "max_tokens": 16}
    count = int(rate * seconds)
    start = time.perf_counter() + 0.05
    latencies: list[float] = []
    failures = 0
    base, headers = client.target(via)

    async def one(i: int) -> None:
        nonlocal failures
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            async with client.session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
                    return
        except Exception:
            failures += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - start
    return {
        "rate": rate,
        "achieved": round(len(latencies) / elapsed, 1),
        "p50_ms": ms(pct(latencies, 0.5)) if latencies else float("inf"),
        "p99_ms": ms(pct(latencies, 0.99)) if latencies else float("inf"),
        "failures": failures,
    }


async def max_rps(client: Client, rates: list[int], seconds: float) -> dict[str, Any]:
    await set_engine(client, tokens=16)
    steps = []
    best = 0.0
    for rate in rates:
        direct = await open_loop(client, DIRECT, rate, seconds)
        gateway = await open_loop(client, GATEWAY, rate, seconds)
        added = round(gateway["p99_ms"] - direct["p99_ms"], 3)
        ok = gateway["failures"] == 0 and gateway["achieved"] >= 0.95 * rate and added <= 5.0
        steps.append({"rate": rate, "direct": direct, "gateway": gateway, "added_p99_ms": added, "ok": ok})
        if ok:
            best = rate
        elif gateway["achieved"] < 0.8 * rate or gateway["p99_ms"] > 1000:
            break  # saturated: higher steps only queue
    failed = [step["rate"] for step in steps if not step["ok"]]
    return {"max_rps_p99_5ms": best, "failed_steps": failed, "steps": steps}


# 4 ---------------------------------------------------------------------------------------------


async def concurrent_streams(client: Client, via: str, count: int) -> dict[str, Any]:
    body = {**CHAT, "max_tokens": 64, "stream": True}

    async def one(i: int) -> StreamResult | None:
        await asyncio.sleep(i * 0.5 / count)  # streams open over half a second, as clients arrive
        try:
            return await client.stream(via, body)
        except Exception:
            return None

    results = await asyncio.gather(*(one(i) for i in range(count)))
    stalled = sum(r is None or r.tokens < 64 or max(r.gaps, default=0) > STALL_GAP_S for r in results)
    gaps = [g for r in results if r for g in r.gaps]
    return {"streams": count, "stalled": stalled, "gap_p99_ms": ms(pct(gaps, 0.99)) if gaps else None,
            "gap_max_ms": ms(max(gaps)) if gaps else None}  # fmt: skip


async def max_streams(client: Client, counts: list[int]) -> dict[str, Any]:
    await set_engine(client, ttft_ms=20, gap_ms=20)
    steps = []
    best = 0
    for count in counts:
        direct = await concurrent_streams(client, DIRECT, count)
        gateway = await concurrent_streams(client, GATEWAY, count)
        steps.append({"streams": count, "direct": direct, "gateway": gateway})
        if gateway["stalled"] == 0:
            best = count
        else:
            break
    return {"max_streams": best, "steps": steps}


# 5 ---------------------------------------------------------------------------------------------


async def metering_accuracy(client: Client, seed_value: int, *, usage_every_chunk: bool) -> dict[str, Any]:
    # The stream shape of section 2; usage in every chunk (vLLM) or at a stream's end only (llama.cpp).
    await set_engine(client, ttft_ms=20, gap_ms=20, continuous_usage=usage_every_chunk)
    rng = random.Random(seed_value)  # noqa: S311 - request shapes, not secrets
    kinds = ["json", "stream", "stream_usage", "cut", "completion"]
    half = len(client.platform.accuracy_ids) // 2  # each run its own deployments
    ids = client.platform.accuracy_ids[:half] if usage_every_chunk else client.platform.accuracy_ids[half:]
    plan = [(dep, kinds[i % len(kinds)]) for i, dep in enumerate(ids)]
    base, headers = client.target(GATEWAY)

    async def run(dep: str, kind: str) -> None:
        words = " ".join("w" for _ in range(rng.randint(1, 40)))
        tokens = rng.randint(1, 48)
        body: dict[str, Any] = {"model": dep, "messages": [{"role": "user", "content": words}], "max_tokens": tokens}
        if kind == "json":
            await client.json_call(GATEWAY, body)
        elif kind == "completion":
            await client.json_call(GATEWAY, {"model": dep, "prompt": words, "max_tokens": tokens}, "/v1/completions")
        elif kind == "stream":
            await client.stream(GATEWAY, {**body, "stream": True})
        elif kind == "stream_usage":
            await client.stream(GATEWAY, {**body, "stream": True, "stream_options": {"include_usage": True}})
        else:
            await client.stream(GATEWAY, {**body, "max_tokens": 48, "stream": True}, cut_after=rng.randint(1, 40))

    async def after(delay: float, dep: str, kind: str) -> None:
        await asyncio.sleep(delay)
        await run(dep, kind)

    # Clients arrive over a second (all of them in flight together for most of the run).
    await asyncio.gather(*(after(i / len(plan), dep, kind) for i, (dep, kind) in enumerate(plan)))
    await asyncio.sleep(2.5)  # the engine notices cuts; the gateway flushes its counters every second
    async with client.session.get(f"{client.platform.engine}/_sim/records") as response:
        records = {r["model"]: r for r in await response.json()}
    exact = 0
    misses = []
    for dep, kind in plan:
        async with client.session.get(f"{base}/api/v1/deployments/{dep}/metrics?window=5m", headers=headers) as r:
            billed = await r.json()
        engine = records.get(dep, {})
        want = (engine.get("prompt_tokens"), engine.get("completion_tokens"))
        got = (billed["prompt_tokens"], billed["completion_tokens"])
        if want == got and billed["requests"] == 1:
            exact += 1
        else:
            misses.append({"kind": kind, "engine": want, "billed": got})
    return {"requests": len(plan), "exact": exact, "metering_accuracy": round(exact / len(plan), 4),
            "misses": misses[:10], "cut_streams": sum(k == "cut" for _, k in plan)}  # fmt: skip


# 6 ---------------------------------------------------------------------------------------------


def start_smollm2(platform: Platform) -> str:
    from catalog.data import MODELS
    from fleet.providers.local.driver import _gguf_path

    model = next(m for m in MODELS if m["slug"] == "smollm2-135m-instruct")
    port = free_port()
    env = {**platform.env(), "GPUCLOUD_ENGINE_API_KEY": ENGINE_KEY}
    args = [PYTHON, "-m", "fleet.providers.local.engine", "--instance-id", "bench", "--tag", "bench",
            "--port", str(port), "--model-path", str(_gguf_path(model["engine_args"])),
            "--alias", "smollm2-135m-instruct", "--parallel", "1"]  # fmt: skip
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    platform.processes.append(process)
    deadline = time.monotonic() + 120
    import urllib.request

    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return f"http://127.0.0.1:{port}"
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("SmolLM2 did not start")


async def smollm2_throughput(client: Client, smollm2_url: str, requests: int) -> dict[str, Any]:
    body = {"model": client.platform.smollm2_id, "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": 128, "stream": True, "temperature": 0}  # fmt: skip
    import aiohttp

    direct: list[float] = []
    gateway: list[float] = []
    # llama.cpp's server closes a connection after a stream: both paths open a new one per request.
    await client.session.close()
    client.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    await client.stream(DIRECT, body, base=smollm2_url)  # warm the model
    for i in range(requests):
        for via in (GATEWAY, DIRECT) if i % 2 else (DIRECT, GATEWAY):
            result = await client.stream(via, body, base=None if via == GATEWAY else smollm2_url)
            generation = result.total - (result.ttft or 0)
            if result.tokens > 1 and generation > 0:
                (gateway if via == GATEWAY else direct).append((result.tokens - 1) / generation)
    return {"requests_per_path": requests, "direct_tokens_per_s": round(statistics.median(direct), 1),
            "gateway_tokens_per_s": round(statistics.median(gateway), 1)}  # fmt: skip


async def smollm2_cut_metering(client: Client, smollm2_url: str, cuts: int, seed_value: int) -> dict[str, Any]:
    """Streams cut after a few tokens: the prompt tokens billed for them against llama.cpp's count."""
    rng = random.Random(seed_value)  # noqa: S311 - request shapes, not secrets
    topics = ["a robot", "the sea at night", "a city in the rain", "an old lighthouse", "a long train journey"]
    base, headers = client.target(GATEWAY)
    metrics = f"{base}/api/v1/deployments/{client.platform.smollm2_id}/metrics?window=5m"

    async def billed() -> tuple[int, int]:
        async with client.session.get(metrics, headers=headers) as response:
            window = await response.json()
        return window["prompt_tokens"], window["cut"]

    await asyncio.sleep(2.5)  # the earlier requests' counters are flushed
    before_prompt, before_cut = await billed()
    engine_prompt = 0
    for i in range(cuts):
        messages = [{"role": "user", "content": f"Write a long story about {topics[i % len(topics)]}, part {i}."}]
        body = {"model": client.platform.smollm2_id, "messages": messages, "max_tokens": 200, "temperature": 0}
        probe = {**body, "max_tokens": 1, "stream": True, "stream_options": {"include_usage": True}}
        counted = await client.stream(DIRECT, probe, base=smollm2_url)
        engine_prompt += (counted.usage or {}).get("prompt_tokens", 0)
        await client.stream(GATEWAY, {**body, "stream": True}, cut_after=rng.randint(1, 8))
    await asyncio.sleep(2.5)
    after_prompt, after_cut = await billed()
    return {"cut_streams": after_cut - before_cut, "engine_prompt_tokens": engine_prompt,
            "billed_prompt_tokens": after_prompt - before_prompt}  # fmt: skip


# 7 ---------------------------------------------------------------------------------------------


async def closed_loop(client: Client, via: str, clients: int, seconds: float, server: int) -> dict[str, Any]:
    """`clients` clients, each sending its next request as soon as the previous one answered
    (section 1's request), for `seconds`: requests per second, latency percentiles, and the CPU
    time the `server` process spent."""
    body = {**CHAT, "max_tokens": 16}
    base, headers = client.target(via)
    url = f"{base}/v1/chat/completions"
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with client.session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except Exception:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    cpu_before = cpu_seconds(server)
    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "latencies": latencies, "failures": failures,
            "cpu_seconds": cpu_seconds(server) - cpu_before}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used (user + system, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process onto `cpus` (taskset -a): a thread pool started before keeps its own mask."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def proxies_pinned(platform: Platform, *, contended: bool) -> Any:
    """The gateway and the bare proxy on the same one core (the last), the engine and the load
    generator on the others: each Python hop gets one whole core, the same one, in turn. `contended`:
    a busy process shares that core (as other work on a shared machine), so the hop's CPU per request,
    not the engine, bounds many clients on both paths alike."""
    everything = os.sched_getaffinity(0)
    hop = {max(everything)}
    rest = (everything - hop) or everything
    servers = {platform.gateway_pid, platform.bare_pid}
    others = [p.pid for p in platform.processes if p.pid not in servers] + [os.getpid()]
    # Bounded, so that it ends by itself even if this process is killed before it can stop it.
    spin = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end: pass"
    busy = subprocess.Popen([PYTHON, "-c", spin]) if contended else None  # noqa: S603
    try:
        for pid in servers | ({busy.pid} if busy else set()):
            pin(pid, hop)
        for pid in others:
            pin(pid, rest)
        yield sorted(hop)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        for pid in [*servers, *others]:
            with contextlib.suppress(OSError):
                pin(pid, everything)


async def throughput(
    client: Client, platform: Platform, levels: list[int], seconds: float, rounds: int, *, contended: bool = False
) -> dict[str, Any]:
    """Closed-loop throughput of the gateway and the bare proxy (the floor) at each concurrency:
    `rounds` runs of `seconds` per path, alternating which path goes first, summed per path. The
    engine answers in 20 ms (a short answer of a small model): one client is bound by the engine, many
    by the hop's CPU."""
    await set_engine(client, tokens=16, ttft_ms=20)
    servers = {BARE: platform.bare_pid, GATEWAY: platform.gateway_pid}
    steps = []
    with proxies_pinned(platform, contended=contended) as hop:
        for clients in levels:
            for via in (BARE, GATEWAY):  # warm: connection pools to the engine at this concurrency
                await closed_loop(client, via, clients, 1.0, servers[via])
            runs: dict[str, list[dict[str, Any]]] = {BARE: [], GATEWAY: []}
            for i in range(rounds):
                for via in (BARE, GATEWAY) if i % 2 == 0 else (GATEWAY, BARE):
                    runs[via].append(await closed_loop(client, via, clients, seconds, servers[via]))
            step: dict[str, Any] = {"clients": clients}
            for via, name in ((BARE, "floor"), (GATEWAY, "gateway")):
                latencies = [x for run in runs[via] for x in run["latencies"]]
                step[f"{name}_rps"] = round(len(latencies) / sum(run["seconds"] for run in runs[via]), 1)
                step[f"{name}_p50_ms"] = ms(pct(latencies, 0.5))
                step[f"{name}_p99_ms"] = ms(pct(latencies, 0.99))
                step[f"{name}_failures"] = sum(run["failures"] for run in runs[via])
                step[f"{name}_rounds_rps"] = [round(run["requests"] / run["seconds"]) for run in runs[via]]
                cpu = sum(run["cpu_seconds"] for run in runs[via])
                step[f"{name}_cpu_ms_per_request"] = round(1000 * cpu / max(1, len(latencies)), 3)
            step["rps_ratio"] = round(step["gateway_rps"] / step["floor_rps"], 3)
            step["p99_ratio"] = round(step["gateway_p99_ms"] / step["floor_p99_ms"], 3)
            steps.append(step)
    return {"pinned_to_cpu": hop, "contended": contended, "seconds_per_run": seconds, "rounds": rounds,
            "steps": steps}  # fmt: skip


# --- the run ------------------------------------------------------------------------------------


async def run(platform: Platform, args: argparse.Namespace, smollm2_url: str | None) -> dict[str, Any]:
    import uvloop  # noqa: F401  (installed by main)

    client = Client(platform)
    CHAT["model"] = platform.deployment_id
    report: dict[str, Any] = {}
    quick = args.quick
    wanted = set(args.only.split(",")) if args.only else None

    def runs(name: str) -> bool:
        return wanted is None or name in wanted

    try:
        if runs("1"):
            section("1. added latency, non-streaming, concurrency 1")
            report["latency"] = show(await added_latency(client, 1000 if quick else 5000))
        if runs("2"):
            section("2. streaming 64 chunks 20 ms apart")
            report["streaming"] = show(await streaming(client, 4 if quick else 12, 8))
        if runs("3"):
            section("3. requests per second with added p99 <= 5 ms")
            rates = [100, 200, 300, 400, 500, 600, 800] if quick else [100, 200, 300, 400, 500, 600, 700, 800, 1000]
            report["rps"] = show(await max_rps(client, rates, 2.0 if quick else 5.0))
        if runs("4"):
            section("4. concurrent streams without stalls")
            report["streams"] = show(await max_streams(client, [64, 128, 256] if quick else [64, 128, 256, 384, 512]))
        if runs("5"):
            section("5. metering accuracy, engine usage in every chunk (vLLM)")
            report["metering"] = show(await metering_accuracy(client, args.seed, usage_every_chunk=True))
            section("5b. metering accuracy, engine usage at a stream's end only (llama.cpp)")
            report["metering_llamacpp"] = show(await metering_accuracy(client, args.seed, usage_every_chunk=False))
        if smollm2_url and runs("6"):
            section("6. real SmolLM2-135M (llama.cpp, CPU), streamed, one at a time")
            report["smollm2"] = show(await smollm2_throughput(client, smollm2_url, 3 if quick else 10))
            section("6b. real SmolLM2-135M: prompt tokens of cut streams, billed vs the engine's count")
            report["smollm2_cuts"] = show(await smollm2_cut_metering(client, smollm2_url, 13, args.seed))
        if runs("7"):
            section("7. closed-loop throughput, gateway vs bare proxy (floor), each pinned to the same one core")
            report["closed_loop"] = show(
                await throughput(client, client.platform, args.clients, 3.0 if quick else 8.0, 2 if quick else 3,
                                 contended=args.contended)
            )  # fmt: skip
            print_throughput(report["closed_loop"]["steps"])
    finally:
        await client.close()
    return report


def print_throughput(steps: list[dict[str, Any]]) -> None:
    print("    clients | floor rps  p50 ms  p99 ms  cpu ms/req | gateway rps  p50 ms  p99 ms  cpu ms/req |"
          " rps ratio  p99 ratio")  # fmt: skip
    for s in steps:
        print(f"    {s['clients']:7} | {s['floor_rps']:9.1f} {s['floor_p50_ms']:7.2f} {s['floor_p99_ms']:7.2f} "
              f"{s['floor_cpu_ms_per_request']:11.3f} | "
              f"{s['gateway_rps']:11.1f} {s['gateway_p50_ms']:7.2f} {s['gateway_p99_ms']:7.2f} "
              f"{s['gateway_cpu_ms_per_request']:11.3f} | "
              f"{s['rps_ratio']:9.3f} {s['p99_ratio']:10.3f}", flush=True)  # fmt: skip


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show(result: dict[str, Any]) -> dict[str, Any]:
    for key, value in result.items():
        if key == "steps":
            for step in value:
                print("   ", json.dumps(step), flush=True)
        else:
            print(f"   {key}: {value}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short run (about a minute)")
    parser.add_argument("--smollm2", action="store_true", help="also measure SmolLM2 in a quick run")
    parser.add_argument("--no-smollm2", action="store_true", help="skip SmolLM2 in a full run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--profile", metavar="DIR", help="run both servers under cProfile: DIR/gateway.prof, DIR/floor.prof"
    )
    parser.add_argument("--contended", action="store_true", help="section 7 with a busy process on the hops' core")
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 16, 64],
        help="section 7's concurrency levels (default 1,16,64; the JSON line needs 16 and 64)",
    )
    parser.add_argument("--only", default="", help="run only these sections, e.g. --only 7 or --only 1,7")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpucloud-bench-") as var_dir:
        platform = Platform(var_dir=var_dir)
        try:
            engine_port, gateway_port, bare_port = free_port(), free_port(), free_port()
            platform.engine = f"http://127.0.0.1:{engine_port}"
            platform.gateway = f"http://127.0.0.1:{gateway_port}"
            platform.bare = f"http://127.0.0.1:{bare_port}"
            platform.start([PYTHON, "-m", "tests.fakes.engine_server", "--port", str(engine_port),
                            "--api-key", ENGINE_KEY], f"{platform.engine}/health")  # fmt: skip
            want_smollm2 = (args.smollm2 or not args.quick) and not args.no_smollm2
            os.environ.update(platform.env())
            smollm2_url = start_smollm2(platform) if want_smollm2 else None
            seed(platform, 2 * (50 if args.quick else 200), smollm2_url)  # section 5's two runs
            # --profile DIR: the gateway and the bare proxy under cProfile (bench/profiled_gateway.py),
            # their statistics in DIR/gateway.prof and DIR/floor.prof; the figures are then those of
            # profiled, slower servers.
            serve = ["--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)  # the servers write their .prof there

            def server(app: str, profile: str) -> list[str]:
                if not args.profile:
                    return [PYTHON, "-m", "uvicorn", app, *serve]
                return [
                    PYTHON,
                    "-m",
                    "bench.profiled_gateway",
                    str(Path(args.profile, profile).resolve()),
                    "--app",
                    app,
                ]

            platform.gateway_pid = platform.start(
                [*server("gpucloud.asgi:application", "gateway.prof"), "--port", str(gateway_port)],
                f"{platform.gateway}/healthz",
            )
            os.environ["BARE_PROXY_UPSTREAM"] = platform.engine
            platform.bare_pid = platform.start(
                [*server("bench.bare_proxy:app", "floor.prof"), "--port", str(bare_port)], f"{platform.bare}/health"
            )
            import uvloop

            report = uvloop.run(run(platform, args, smollm2_url))
        finally:
            platform.stop()
    summary: dict[str, Any] = {}
    if "latency" in report:
        summary["added_p50_ms"] = report["latency"]["added_p50_ms"]
        summary["added_p99_ms"] = report["latency"]["added_p99_ms"]
    if "streaming" in report:
        summary["added_ttft_p99_ms"] = report["streaming"]["added_ttft_p99_ms"]
        summary["added_gap_p99_ms"] = report["streaming"]["added_gap_p99_ms"]
        summary["chunk_counts_identical"] = report["streaming"]["chunk_counts_identical"]
    if "rps" in report:
        summary["max_rps_p99_5ms"] = report["rps"]["max_rps_p99_5ms"]
    if "streams" in report:
        summary["max_streams"] = report["streams"]["max_streams"]
    if "metering" in report:
        summary["metering_accuracy"] = report["metering"]["metering_accuracy"]
        summary["metering_accuracy_llamacpp"] = report["metering_llamacpp"]["metering_accuracy"]
    if "smollm2" in report:
        summary["smollm2_direct_tps"] = report["smollm2"]["direct_tokens_per_s"]
        summary["smollm2_gateway_tps"] = report["smollm2"]["gateway_tokens_per_s"]
        cuts = report["smollm2_cuts"]
        summary["smollm2_cut_prompt_tokens_billed_vs_engine"] = [
            cuts["billed_prompt_tokens"],
            cuts["engine_prompt_tokens"],
        ]
    if "closed_loop" in report:
        steps = {step["clients"]: step for step in report["closed_loop"]["steps"]}
        for clients in sorted(steps):
            summary[f"rps_c{clients}"] = steps[clients]["gateway_rps"]
            summary[f"floor_rps_c{clients}"] = steps[clients]["floor_rps"]
            summary[f"p99_c{clients}_ms"] = steps[clients]["gateway_p99_ms"]
            summary[f"floor_p99_c{clients}_ms"] = steps[clients]["floor_p99_ms"]
    summary["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
