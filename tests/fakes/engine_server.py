"""An engine simulator: an OpenAI-compatible inference server with a configurable time to first
token and inter-token delay, for the gateway's tests and benchmark (never for production).

It answers like llama.cpp's server (the local provider's engine), including its deviations from
OpenAI's schemas that the gateway must repair: chat choices without `logprobs`, messages without
`refusal`, an extra `timings` object, errors with an integer `code` and no `param`. Streams send one
token per chunk, a finish chunk, then a usage chunk when `stream_options.include_usage` is set
(with `continuous_usage_stats` every chunk carries usage, as vLLM does; `continuous_usage=False`
ignores it, as llama.cpp does). Prompts are counted one token per word plus 4 per chat message (the
template's markers), and the tokenizer endpoints count the same way: llama.cpp's (POST
/apply-template, POST /tokenize {"content"}) or vLLM's (POST /tokenize {"messages"} or {"prompt"},
answering a count), as `tokenizer` says ("" for neither).

Every request is recorded (`Engine.records`, or `GET /_sim/records` from another process) with
the tokens it actually wrote before finishing or being cut, so tests and the benchmark compare
what the gateway metered with what the engine did.

    python -m tests.fakes.engine_server --port 9100 --ttft-ms 5 --gap-ms 20 [--api-key K]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import uvloop
from aiohttp import BodyPartReader, web

WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")


@dataclass
class Behaviour:
    """How the engine answers; change it at any time (tests) or with POST /_sim/behaviour."""

    ttft_ms: float = 0.0
    gap_ms: float = 0.0
    tokens: int = 8  # completion tokens when the request sets no max_tokens
    fail_status: int = 0  # answer every inference request with this status (0: answer normally)
    embedding_dims: int = 8
    max_running: int = 0  # generations at once (vLLM's --max-num-seqs); the rest wait. 0: no limit
    continuous_usage: bool = True  # honour stream_options.continuous_usage_stats (vLLM); False: llama.cpp
    tokenizer: str = "llama.cpp"  # its tokenizer endpoints: "llama.cpp", "vllm", or "" (none: 404)


@dataclass
class Record:
    id: str
    path: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int = 0  # tokens written to the client so far
    finished: bool = False  # the whole answer was written
    cut: bool = False  # the client went away before the end
    status: int = 200
    model: str = ""  # as the request named it (the benchmark routes each request by deployment id)
    received: int = 0  # bytes of an uploaded file read so far


@dataclass
class Engine:
    api_key: str = ""
    behaviour: Behaviour = field(default_factory=Behaviour)
    records: list[Record] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    running: int = 0  # generating now
    peak_running: int = 0  # the most generating at once so far
    waiting: int = 0  # queued for a free slot: what /metrics reports as vllm:num_requests_waiting

    # --- plumbing -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        # aiohttp refuses bodies over 1 MiB by default; engines take what the gateway lets through.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/audio/transcriptions", self._transcription)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/images/generations", self._image)
        app.router.add_post("/apply-template", self._apply_template)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_get("/_sim/records", self._records)
        app.router.add_post("/_sim/behaviour", self._set_behaviour)
        return app

    def record(self, path: str, stream: bool, prompt_tokens: int) -> Record:
        rec = Record(id=f"chatcmpl-sim{next(self._ids)}", path=path, stream=stream, prompt_tokens=prompt_tokens)
        self.records.append(rec)
        return rec

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key", "authentication_error")
        if self.behaviour.fail_status:
            self.record(request.path, False, 0).status = self.behaviour.fail_status
            return _error(self.behaviour.fail_status, "simulated engine failure", "server_error")
        return None

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"error":{"code":400,"message":"bad json"}}') from None
        return body if isinstance(body, dict) else {}

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "sim", "object": "model"}]})

    async def _records(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.records])

    async def _set_behaviour(self, request: web.Request) -> web.Response:
        self.behaviour = Behaviour(**await request.json())
        if request.query.get("reset"):
            self.records.clear()
        return web.json_response(asdict(self.behaviour))

    # --- text generation ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Wait for a free generation slot when the engine has a limit, as vLLM's scheduler does."""
        if self.behaviour.max_running:
            self.waiting += 1
            try:
                while self.running >= self.behaviour.max_running:
                    await asyncio.sleep(0.005)
            finally:
                self.waiting -= 1
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        try:
            yield
        finally:
            self.running -= 1

    async def _metrics(self, request: web.Request) -> web.Response:
        """vLLM's Prometheus gauges of its scheduler (the names and labels vLLM publishes)."""
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key", "authentication_error")
        lines = []
        for name, value in (("num_requests_running", self.running), ("num_requests_waiting", self.waiting)):
            lines += [f"# HELP vllm:{name} Number of requests.", f"# TYPE vllm:{name} gauge",
                      f'vllm:{name}{{model_name="sim"}} {float(value)}']  # fmt: skip
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await self._json(request)
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _error(400, "Expected 'messages' to be an array", "invalid_request_error")
        async with self._slot():
            return await self._generate(request, body, _chat_prompt_tokens(messages), chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await self._json(request)
        async with self._slot():
            return await self._generate(request, body, _count_words(body.get("prompt")), chat=False)

    async def _generate(
        self, request: web.Request, body: dict[str, Any], prompt: int, *, chat: bool
    ) -> web.StreamResponse:
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.behaviour.tokens)
        stream = bool(body.get("stream"))
        model = str(body.get("model") or "sim")
        rec = self.record(request.path, stream, prompt)
        rec.model = model
        if not stream:
            await _sleep_ms(self.behaviour.ttft_ms + self.behaviour.gap_ms * max(0, n - 1))
            rec.completion_tokens, rec.finished = n, True
            return web.json_response(_whole(rec, model, chat, n))
        options = body.get("stream_options") or {}
        usage_at_end = bool(options.get("include_usage"))
        usage_always = usage_at_end and bool(options.get("continuous_usage_stats")) and self.behaviour.continuous_usage
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            await _sleep_ms(self.behaviour.ttft_ms)
            for i in range(n):
                if i:
                    await _sleep_ms(self.behaviour.gap_ms)
                chunk = _chunk(rec, model, chat, WORDS[i % len(WORDS)], role=i == 0)
                if usage_always:
                    chunk["usage"] = _usage(rec.prompt_tokens, i + 1)
                await response.write(_sse(chunk))
                rec.completion_tokens = i + 1
            final = _chunk(rec, model, chat, None, finish="length")
            if usage_always:
                final["usage"] = _usage(rec.prompt_tokens, n)
            await response.write(_sse(final))
            if usage_at_end:
                tail = {**_chunk(rec, model, chat, None), "choices": [], "usage": _usage(rec.prompt_tokens, n)}
                await response.write(_sse(tail))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            rec.finished = True
        except (asyncio.CancelledError, ConnectionResetError):
            rec.cut = True
            raise
        return response

    # --- tokenizer endpoints (llama.cpp's or vLLM's) --------------------------------------------

    async def _apply_template(self, request: web.Request) -> web.Response:
        """llama.cpp: the chat as the model's template renders it (one word per marker here)."""
        refusal = self._refusal(request)
        if refusal is not None or self.behaviour.tokenizer != "llama.cpp":
            return refusal or _error(404, "File Not Found", "not_found_error")
        messages = (await self._json(request)).get("messages") or []
        rendered = "".join(f"<|im_start|> {m.get('role')} : {_text(m.get('content'))} <|im_end|>\n" for m in messages)
        return web.json_response({"prompt": rendered})

    async def _tokenize(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None or not self.behaviour.tokenizer:
            return refusal or _error(404, "File Not Found", "not_found_error")
        body = await self._json(request)
        if self.behaviour.tokenizer == "llama.cpp":  # {"content"} -> {"tokens"}; anything else counts nothing
            return web.json_response({"tokens": list(range(_count_words(body.get("content"))))})
        if isinstance(body.get("messages"), list):
            count = _chat_prompt_tokens(body["messages"])
        elif isinstance(body.get("prompt"), str):
            count = _count_words(body["prompt"])
        else:
            return _error(400, "prompt or messages is required", "invalid_request_error")
        return web.json_response({"count": count, "max_model_len": 2048, "tokens": list(range(count))})

    # --- other modalities ---------------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await self._json(request)
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        rec = self.record(request.path, False, sum(_count_words(i) for i in items))
        rec.finished = True
        dims = self.behaviour.embedding_dims
        data = [
            {"object": "embedding", "index": i, "embedding": [round((i + 1) / (d + 1), 4) for d in range(dims)]}
            for i in range(len(items))
        ]
        usage = {"prompt_tokens": rec.prompt_tokens, "total_tokens": rec.prompt_tokens}
        return web.json_response({"object": "list", "model": body.get("model") or "sim", "data": data, "usage": usage})

    async def _transcription(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        rec = self.record(request.path, False, 0)
        model = "?"
        async for part in await request.multipart():  # read as it arrives: `received` counts the file so far
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "model":
                model = await part.text()
            while part.name == "file" and (chunk := await part.read_chunk()):
                rec.received += len(chunk)
        rec.finished = True
        return web.json_response({"text": f"heard {rec.received} bytes of {model}"})

    async def _speech(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await self._json(request)
        rec = self.record(request.path, False, _count_words(body.get("input")))
        rec.finished = True
        return web.Response(body=b"RIFF" + str(body.get("input", "")).encode(), content_type="audio/wav")

    async def _image(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await self._json(request)
        rec = self.record(request.path, False, _count_words(body.get("prompt")))
        rec.finished = True
        return web.json_response({"created": int(time.time()), "data": [{"b64_json": "aW1hZ2U="}]})


# --- shapes (llama.cpp's, deviations included) ----------------------------------------------------


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _whole(rec: Record, model: str, chat: bool, n: int) -> dict[str, Any]:
    text = "".join(WORDS[i % len(WORDS)] for i in range(n))
    base = {"id": rec.id, "created": int(time.time()), "model": model, "usage": _usage(rec.prompt_tokens, n)}
    if chat:  # no `logprobs` in the choice, no `refusal` in the message: as llama.cpp answers
        choice = {"finish_reason": "length", "index": 0, "message": {"role": "assistant", "content": text}}
        return {**base, "object": "chat.completion", "choices": [choice], "timings": {"predicted_n": n}}
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "length"}
    return {**base, "object": "text_completion", "choices": [choice]}


def _chunk(
    rec: Record, model: str, chat: bool, text: str | None, *, role: bool = False, finish: str | None = None
) -> dict[str, Any]:
    base = {"id": rec.id, "created": int(time.time()), "model": model}
    if chat:
        delta: dict[str, Any] = {} if text is None else {"content": text}
        if role:
            delta["role"] = "assistant"
        choice = {"finish_reason": finish, "index": 0, "delta": delta}
        return {**base, "object": "chat.completion.chunk", "choices": [choice]}
    choice = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
    return {**base, "object": "text_completion", "choices": [choice]}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _error(status: int, message: str, type_: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "type": type_}}, status=status)


def _chat_prompt_tokens(messages: list[Any]) -> int:
    return sum(_count_words(m.get("content")) for m in messages if isinstance(m, dict)) + 4 * len(messages)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_text(v.get("text") if isinstance(v, dict) else v) for v in value)
    return value if isinstance(value, str) else ""


def _count_words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(v.get("text") if isinstance(v, dict) else v) for v in value)
    return 0


async def _sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


# --- running it -----------------------------------------------------------------------------------


class EngineThread:
    """The simulator on a loopback port in a thread of its own (tests)."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EngineThread:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the engine simulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self.engine.app(), handler_cancellation=True, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    engine = Engine(
        api_key=args.api_key, behaviour=Behaviour(ttft_ms=args.ttft_ms, gap_ms=args.gap_ms, tokens=args.tokens)
    )
    try:
        uvloop.install()
    except ImportError:
        pass
    web.run_app(engine.app(), host="127.0.0.1", port=args.port, handler_cancellation=True, access_log=None, print=None)


if __name__ == "__main__":
    main()
