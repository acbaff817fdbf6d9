"""Engine answers repaired to OpenAI's published schemas (reference/openai-openapi.json), and the
token usage read from them.

Engines deviate in small ways that break strict clients: llama.cpp's chat choices carry no
`logprobs` and its messages no `refusal` (both required, nullable); errors come without `param`
and with an integer `code`. Only what is missing is added; nothing an engine sent is dropped,
except the `usage` the gateway asked for on a client's behalf and llama.cpp's `timings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Usage | None:
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        completion = usage.get("completion_tokens") or usage.get("output_tokens") or 0
        return cls(int(prompt), int(completion))


def completion_id(engine_id: object) -> object:
    """A text completion's id as OpenAI's (`cmpl-`): llama.cpp names every completion `chatcmpl-`.
    The same engine id gives the same answer, so a stream's chunks keep one id."""
    if not isinstance(engine_id, str) or engine_id.startswith("cmpl-"):
        return engine_id
    return "cmpl-" + engine_id.removeprefix("chatcmpl-")


def chat_completion_id(engine_id: object) -> object:
    if not isinstance(engine_id, str) or engine_id.startswith("chatcmpl-"):
        return engine_id
    return "chatcmpl-" + engine_id


def repair_chat_completion(payload: dict[str, Any]) -> None:
    """CreateChatCompletionResponse: every choice has `logprobs`, every message `refusal`."""
    payload.pop("timings", None)  # llama.cpp's own statistics, not OpenAI's
    if "id" in payload:
        payload["id"] = chat_completion_id(payload["id"])
    for choice in payload.get("choices") or ():
        if isinstance(choice, dict):
            choice.setdefault("logprobs", None)
            message = choice.get("message")
            if isinstance(message, dict):
                message.setdefault("refusal", None)
                message.setdefault("content", None)


def repair_completion(payload: dict[str, Any]) -> None:
    """CreateCompletionResponse: every choice has `logprobs` and `text`; its id starts `cmpl-`."""
    payload.pop("timings", None)
    if "id" in payload:
        payload["id"] = completion_id(payload["id"])
    for choice in payload.get("choices") or ():
        if isinstance(choice, dict):
            choice.setdefault("logprobs", None)
            choice.setdefault("text", "")


def chunk_tokens(payload: dict[str, Any], *, chat: bool) -> int:
    """Tokens of generated text in one chunk: engines stream one token per chunk (llama.cpp,
    vLLM at its default stream interval), so a chunk with text counts one."""
    count = 0
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if chat:
            delta = choice.get("delta")
            if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls") or delta.get("refusal")):
                count += 1
        elif choice.get("text"):
            count += 1
    return count


REPAIRS = {"/v1/chat/completions": repair_chat_completion, "/v1/completions": repair_completion}
