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


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": None, "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": [{"type": "picture"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": []}, "messages"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"n": "2"}, "n"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_a_request_openai_would_refuse_is_a_400_naming_the_field_before_anything_is_woken_or_forwarded(
    server: str, alice: Persona, engines: Callable[[], EngineThread], change: dict[str, object], param: str
) -> None:
    engine = engines()
    ready = serving_deployment(alice, [engine])
    cold = serving_deployment(alice, [], status="scaled_to_zero")
    auth = {"Authorization": f"Bearer {alice.key}"}
    for model in (ready.pk, cold.pk):
        response = httpx.post(f"{server}/v1/chat/completions", json={**CHAT, "model": model, **change}, headers=auth)
        assert response.status_code == 400, response.text
        assert_valid("ErrorResponse", response.json())
        error = response.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error")
        assert error["message"].startswith(f"Invalid '{param}': ")
    assert engine.engine.records == []
    cold.refresh_from_db()
    assert (cold.status, cold.instances.count()) == ("scaled_to_zero", 0)


def test_embeddings_and_completions_requests_are_checked_too(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    engine = engines()
    serving_deployment(alice, [engine])
    embedder = serving_deployment(alice, [engine], model="smollm2-135m-embedding")
    auth = {"Authorization": f"Bearer {alice.key}"}
    bad_embedding = httpx.post(f"{server}/v1/embeddings", headers=auth,
                               json={"model": embedder.pk, "input": "x", "encoding_format": "hex"})  # fmt: skip
    assert (bad_embedding.status_code, bad_embedding.json()["error"]["param"]) == (400, "encoding_format")
    completion = {"model": "smollm2-135m-instruct", "prompt": "x", "max_tokens": "many"}
    bad_completion = httpx.post(f"{server}/v1/completions", headers=auth, json=completion)
    assert (bad_completion.status_code, bad_completion.json()["error"]["param"]) == (400, "max_tokens")
    assert engine.engine.records == []


def test_text_completion_ids_start_cmpl_and_chat_ids_chatcmpl(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    serving_deployment(alice, [engines()])  # the simulator names every completion chatcmpl-, as llama.cpp does
    auth = {"Authorization": f"Bearer {alice.key}"}
    completion = {"model": "smollm2-135m-instruct", "prompt": "hi", "max_tokens": 3}
    whole = httpx.post(f"{server}/v1/completions", json=completion, headers=auth).json()
    assert whole["id"].startswith("cmpl-") and not whole["id"].startswith("cmpl-chatcmpl")
    chunks = sse_documents(
        httpx.post(f"{server}/v1/completions", json={**completion, "stream": True}, headers=auth).text
    )
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("cmpl-")
    chat = httpx.post(f"{server}/v1/chat/completions", json=CHAT, headers=auth).json()
    assert chat["id"].startswith("chatcmpl-")
