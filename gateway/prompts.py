"""How many tokens a request's prompt holds when the engine has not said: a stream the client cut
before the engine's usage arrived (llama.cpp reports usage only at a stream's end), or a request in
flight when its gateway process died (gateway/counters.py).

`engine_count` asks the engine's own tokenizer: llama.cpp's server renders a chat with the model's
template (POST /apply-template) and counts it (POST /tokenize {"content"}, special tokens added as
for a completion); vLLM counts a chat ({"messages"}, with the generation prompt) or a prompt
({"prompt"}) in one POST /tokenize. It answers None when the engine has neither or does not answer
within TOKENIZE_TIMEOUT_SECONDS. `estimate` is the documented fallback: one token per
CHARS_PER_TOKEN characters of text (OpenAI's rule of thumb for English), plus MESSAGE_TOKENS per
chat message for the template's markers; a prompt given as token ids is counted exactly; a body
over PARSE_LIMIT_BYTES, one token per CHARS_PER_TOKEN bytes of it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import aiohttp

TOKENIZE_TIMEOUT_SECONDS = 2.0
CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4
MAX_PROMPTS = 16  # a batch of text-completion prompts is counted one by one up to this many
PARSE_LIMIT_BYTES = 256 * 1024  # a larger body is estimated from its size (parsing it would stall the loop)


def _payload(body: bytes | bytearray) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _text(value: Any) -> str:
    """The text of a message's content: a string, or the text of its parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(part.get("text") if isinstance(part, dict) else part) for part in value)
    return ""


def _prompts(payload: dict[str, Any]) -> list[str | list[int]]:
    """A text completion's prompts: a string, token ids, or a batch of either."""
    prompt = payload.get("prompt")
    if isinstance(prompt, str) or (isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)):
        return [prompt]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str | list)]
    return []


def estimate(path: str, body: bytes | bytearray) -> int:
    """The documented estimate of a JSON request's prompt tokens (0 for a body that is not JSON)."""
    if len(body) > PARSE_LIMIT_BYTES:
        return math.ceil(len(body) / CHARS_PER_TOKEN)
    payload = _payload(body)
    if payload is None:
        return 0
    if path == "/v1/chat/completions":
        messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
        chars = sum(len(_text(m.get("content"))) for m in messages)
        return math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_TOKENS * len(messages)
    total = 0
    for prompt in _prompts(payload):
        total += len(prompt) if isinstance(prompt, list) else math.ceil(len(prompt) / CHARS_PER_TOKEN)
    return total


async def engine_count(
    session: aiohttp.ClientSession, endpoint_url: str, headers: dict[str, str], path: str, body: bytes | bytearray
) -> int | None:
    """The prompt's tokens as the engine's tokenizer counts them, or None when it cannot say."""
    payload = _payload(body)
    if payload is None:
        return None
    ask = _Tokenizer(session, endpoint_url, headers)
    try:
        if path == "/v1/chat/completions":
            return await ask.chat(payload)
        prompts = _prompts(payload)
        if not prompts or len(prompts) > MAX_PROMPTS:
            return None
        counts = [len(p) if isinstance(p, list) else await ask.text(p) for p in prompts]
        return None if None in counts else sum(c for c in counts if c is not None)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        return None


class _Tokenizer:
    def __init__(self, session: aiohttp.ClientSession, endpoint_url: str, headers: dict[str, str]) -> None:
        self.session, self.endpoint_url, self.headers = session, endpoint_url, headers

    async def _post(self, path: str, document: dict[str, Any]) -> dict[str, Any] | None:
        timeout = aiohttp.ClientTimeout(total=TOKENIZE_TIMEOUT_SECONDS)
        async with self.session.post(
            f"{self.endpoint_url}{path}", json=document, headers=self.headers, timeout=timeout
        ) as response:
            if response.status != 200:
                return None
            answer = await response.json(content_type=None)
            return answer if isinstance(answer, dict) else None

    async def chat(self, payload: dict[str, Any]) -> int | None:
        rendered = await self._post("/apply-template", payload)  # llama.cpp (tools and all, as for the chat)
        if rendered is not None and isinstance(rendered.get("prompt"), str):
            return await self.text(rendered["prompt"])
        document = {"messages": payload.get("messages"), "add_generation_prompt": True}
        if payload.get("tools"):
            document["tools"] = payload["tools"]
        counted = await self._post("/tokenize", document)  # vLLM
        return int(counted["count"]) if counted is not None and "count" in counted else None

    async def text(self, text: str) -> int | None:
        # llama.cpp reads "content", vLLM "prompt" (each ignores the other's); llama.cpp answers the
        # tokens, vLLM a count as well.
        answer = await self._post("/tokenize", {"content": text, "add_special": True, "prompt": text})
        if answer is None:
            return None
        if "count" in answer:
            return int(answer["count"])
        return len(answer["tokens"])
