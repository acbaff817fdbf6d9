"""Memory of one gateway process under large request bodies (issue 15 §4): its RSS before, at its
peak and after 8 concurrent large bodies on /v1, read from /proc/<pid>/status every 5 ms.

    .venv/bin/python bench/large_bodies.py              # every scenario, about a minute
    .venv/bin/python bench/large_bodies.py --only chat-30mb-chunked

What runs: the engine simulator (tests/fakes/engine_server.py) in one process, the platform's ASGI
app under uvicorn (uvloop + httptools, one worker, as `uvicorn gpucloud.asgi:application` serves
it) on a throwaway SQLite database in another, started afresh for each scenario so that each
starts from the same RSS; this process sends the bodies (aiohttp), 64 KiB at a time.

Scenarios (8 requests at once each; chat bodies are streaming requests, `"stream": true`):
- chat-30mb-chunked: the issue's case, 30 MB chat bodies without Content-Length (chunked);
- chat-30mb-length: the same with Content-Length;
- chat-accepted: chat bodies just under /v1/chat/completions' limit (gateway/bodies.py), chunked;
- audio-accepted: transcription uploads just under /v1/audio/transcriptions' limit, with
  Content-Length (as the OpenAI SDKs and curl -F send them).

Every line prints the statuses answered, RSS before / peak / after (after: 2 s after the last
answer) in MB, and seconds; the last line is one JSON object of the same figures. `--rounds 3`
sends the eight three times over, which shows memory kept between rounds.

On this 2-core VM, before the limits (the same sizes; every body answered 200), before / peak /
after: 30 MB chunked 114 / 930 / 114 MB (three rounds: 914 peak, 218 after), 30 MB with length
114 / 900 / 114, chat just under 8 MiB 114 / 327 / 114, audio just under 26 MiB 114 / 794 / 127.
With them: 30 MB chunked 413 at 114 / 145 / 115, with length 413 at 114 / 115 / 115 (nothing is
read), chat 200 at 114 / 203 / 115 (four at a time in the 32 MiB budget), audio 200 at
114 / 120 / 117 (relayed as it arrives).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.gateway_bench import ENGINE_KEY, PYTHON, Platform, free_port, seed_user  # noqa: E402
from gateway.bodies import LIMITS  # noqa: E402

MB = 1_000_000
CHUNK = 64 * 1024
CONCURRENT = 8


@dataclass
class Scenario:
    name: str
    path: str
    size: int
    with_length: bool


SCENARIOS = [
    Scenario("chat-30mb-chunked", "/v1/chat/completions", 30 * MB, with_length=False),
    Scenario("chat-30mb-length", "/v1/chat/completions", 30 * MB, with_length=True),
    Scenario("chat-accepted", "/v1/chat/completions", LIMITS["/v1/chat/completions"] - CHUNK, with_length=False),
    Scenario(
        "audio-accepted", "/v1/audio/transcriptions", LIMITS["/v1/audio/transcriptions"] - CHUNK, with_length=True
    ),
]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class PeakSampler(threading.Thread):
    """The highest RSS of a process, sampled every 5 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            time.sleep(0.005)

    def stop(self) -> int:
        self._done.set()
        self.join(5)
        return self.peak_kb


# --- bodies ---------------------------------------------------------------------------------------


def chat_body(model: str, size: int) -> tuple[bytes, bytes, int]:
    """A chat request of `size` bytes: its head, its tail, and the filler between them."""
    message = {"role": "user", "content": ""}
    head = json.dumps({"model": model, "max_tokens": 1, "stream": True, "messages": [message]})
    head_bytes, tail = head[: -len('"}]}')].encode(), b'"}]}'
    return head_bytes, tail, size - len(head_bytes) - len(tail)


def audio_body(model: str, size: int) -> tuple[bytes, bytes, int]:
    head = (
        f'--bench\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
        '--bench\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = b"\r\n--bench--\r\n"
    return head, tail, size - len(head) - len(tail)


async def chunks(head: bytes, tail: bytes, filler: int) -> AsyncIterator[bytes]:
    yield head
    piece = b"word " * (CHUNK // 5)
    while filler > 0:
        yield piece[:filler]
        filler -= len(piece[:filler])
    yield tail


# --- one scenario -----------------------------------------------------------------------------------


async def send_all(gateway: str, key: str, scenario: Scenario, model: str) -> Counter[str]:
    make = audio_body if scenario.path.endswith("transcriptions") else chat_body
    content_type = "multipart/form-data; boundary=bench" if make is audio_body else "application/json"

    async def one(session: aiohttp.ClientSession) -> str:
        head, tail, filler = make(model, scenario.size)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
        if scenario.with_length:
            headers["Content-Length"] = str(len(head) + filler + len(tail))
        try:
            async with session.post(
                f"{gateway}{scenario.path}", data=chunks(head, tail, filler), headers=headers
            ) as response:
                await response.read()
                return str(response.status)
        except aiohttp.ClientError as exc:  # the gateway answered early and closed while we sent
            return type(exc).__name__

    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return Counter(await asyncio.gather(*(one(session) for _ in range(CONCURRENT))))


def run_scenario(platform: Platform, scenario: Scenario, models: dict[str, str], rounds: int) -> dict[str, object]:
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    platform.start([PYTHON, "-m", "uvicorn", "gpucloud.asgi:application", "--port", str(port),
                    "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
                   f"{gateway}/healthz")  # fmt: skip
    process = platform.processes.pop()
    try:
        model = models["audio" if scenario.path.endswith("transcriptions") else "chat"]
        warm = {"model": models["chat"], "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        auth = {"Authorization": f"Bearer {platform.key}"}
        httpx.post(f"{gateway}/v1/chat/completions", json=warm, headers=auth, timeout=30).raise_for_status()
        time.sleep(0.5)
        before = rss_kb(process.pid)
        sampler = PeakSampler(process.pid)
        sampler.start()
        started = time.monotonic()
        statuses: Counter[str] = Counter()
        for _ in range(rounds):
            statuses += asyncio.run(send_all(gateway, platform.key, scenario, model))
        took = time.monotonic() - started
        time.sleep(2)
        after = rss_kb(process.pid)
        peak = max(sampler.stop(), after)
    finally:
        process.terminate()
        process.wait(10)
    return {
        "scenario": scenario.name,
        "body_mb": round(scenario.size / MB, 2),
        "statuses": dict(statuses),
        "rss_before_mb": round(before / 1000),
        "rss_peak_mb": round(peak / 1000),
        "rss_after_mb": round(after / 1000),
        "seconds": round(took, 1),
    }


def seed(platform: Platform) -> dict[str, str]:
    """A user with a key, a chat deployment and a transcription deployment served by the simulator."""
    deploy, _endpoint = seed_user(platform)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per warm-up request
    return {"chat": deploy().pk, "audio": deploy(model="whisper-large-v3").pk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run one scenario by name")
    parser.add_argument(
        "--rounds", type=int, default=1, help="send the 8 bodies this many times, one round after another"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="gpucloud-bench-") as var_dir:
        platform = Platform(var_dir=var_dir)
        try:
            engine_port = free_port()
            platform.engine = f"http://127.0.0.1:{engine_port}"
            platform.start([PYTHON, "-m", "tests.fakes.engine_server", "--port", str(engine_port),
                            "--api-key", ENGINE_KEY], f"{platform.engine}/health")  # fmt: skip
            models = seed(platform)
            for scenario in SCENARIOS:
                if args.only and scenario.name != args.only:
                    continue
                result = run_scenario(platform, scenario, models, args.rounds)
                results.append(result)
                print(
                    f"{result['scenario']:<20} {result['body_mb']:>6} MB x{CONCURRENT}  {result['statuses']}  "
                    f"RSS before {result['rss_before_mb']} MB, peak {result['rss_peak_mb']} MB, "
                    f"after {result['rss_after_mb']} MB  ({result['seconds']} s)",
                    flush=True,
                )
        finally:
            platform.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
