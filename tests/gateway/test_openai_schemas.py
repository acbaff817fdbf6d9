"""Every answer of /v1 validates against OpenAI's published schemas, although the engine behind it
(the simulator, answering like llama.cpp) deviates from them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fakes.engine_server import EngineThread
from tests.support.gateway import ENGINE_KEY, serving_deployment
from tests.support.openai_schema import assert_valid, problems, sse_documents
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)
CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def test_answers_chunks_lists_and_errors_validate(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    engine = engines()
    serving_deployment(alice, [engine])
    serving_deployment(alice, [engines()], model="smollm2-135m-embedding")
    auth = {"Authorization": f"Bearer {alice.key}"}

    def post(path: str, body: dict[str, object], headers: dict[str, str] = auth) -> httpx.Response:
        return httpx.post(f"{server}{path}", json=body, headers=headers, timeout=20)

    # The engine's own chat answer does not validate (no logprobs, no refusal) ...
    direct = httpx.post(f"{engine.url}/v1/chat/completions", json=CHAT,
                        headers={"Authorization": f"Bearer {ENGINE_KEY}"}).json()  # fmt: skip
    assert any("logprobs" in p for p in problems("CreateChatCompletionResponse", direct))
    # ... the gateway's does.
    assert_valid("CreateChatCompletionResponse", post("/v1/chat/completions", CHAT).json())
    for options in (None, {"include_usage": True}):
        body = {**CHAT, "stream": True, **({"stream_options": options} if options else {})}
        for chunk in sse_documents(post("/v1/chat/completions", body).text):
            assert_valid("CreateChatCompletionStreamResponse", chunk)
    completion = {"model": "smollm2-135m-instruct", "prompt": "hi", "max_tokens": 3}
    assert_valid("CreateCompletionResponse", post("/v1/completions", completion).json())
    *middle, last = sse_documents(post("/v1/completions", {**completion, "stream": True}).text)
    assert_valid("CreateCompletionResponse", last)
    for chunk in middle:
        # The published schema has no stream variant for text completions, and OpenAI's own streams
        # send finish_reason null until the last chunk (clients test for it): only that field is
        # relaxed, and only before the end.
        assert chunk["choices"][0]["finish_reason"] is None
        assert_valid(
            "CreateCompletionResponse", {**chunk, "choices": [{**chunk["choices"][0], "finish_reason": "length"}]}
        )
    embedding = post("/v1/embeddings", {"model": "smollm2-135m-embedding", "input": ["a", "b"]}).json()
    assert_valid("CreateEmbeddingResponse", embedding)
    assert_valid("ListModelsResponse", httpx.get(f"{server}/v1/models", headers=auth).json())
    assert_valid("Model", httpx.get(f"{server}/v1/models/smollm2-135m-instruct", headers=auth).json())

    engine.engine.behaviour.fail_status = 500
    errors = [
        post("/v1/chat/completions", CHAT, {"Authorization": "Bearer gpc_live_nope"}),  # 401
        post("/v1/chat/completions", {**CHAT, "model": "gpt-9"}),  # 404
        post("/v1/chat/completions", {"messages": []}),  # 400
        post("/v1/chat/completions", CHAT),  # 502 from the engine's 500
        httpx.get(f"{server}/v1/models/gpt-9", headers=auth),  # 404
    ]
    assert [e.status_code for e in errors] == [401, 404, 400, 502, 404]
    for error in errors:
        assert_valid("ErrorResponse", error.json())
