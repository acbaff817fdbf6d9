"""The /v1 gateway through the official OpenAI SDK, against real SmolLM2 engines, served by uvicorn
exactly as in production (the gateway is plain ASGI in front of Django)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from accounts.models import ApiKeyKind
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import api_key_create
from deployments.models import Deployment
from deployments.services import deployment_create
from tests.support.billing import fund
from tests.support.gateway import counters
from tests.support.openai_schema import assert_valid, sse_documents
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # the server thread must see committed rows
USD = 1_000_000


def deploy(persona: Persona, model: str) -> Deployment:
    principal = Principal(user=persona.user, org=persona.org, role=Role.OWNER)
    deployment = deployment_create(principal=principal, name=model, model_id=model, gpu_type="cpu", region="local")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.status == "active":
            return deployment
        time.sleep(0.2)
    raise AssertionError(f"{model} did not become active: {deployment.status} {deployment.status_reason}")


def test_openai_sdk_chat_stream_embeddings_and_errors(server: str, alice: Persona, fleet: str) -> None:
    fund(alice.org, 10 * USD)
    chat_deployment = deploy(alice, "smollm2-135m-instruct")
    embedding_deployment = deploy(alice, "smollm2-135m-embedding")
    sdk = openai.OpenAI(base_url=f"{server}/v1", api_key=alice.key, max_retries=0, timeout=60)

    # Each deployment by its id, its catalog model beside it (issue 14: one entry per deployment).
    models = {m.id: m for m in sdk.models.list().data if m.deployment_id}  # type: ignore[attr-defined]
    assert set(models) == {chat_deployment.pk, embedding_deployment.pk}
    assert models[chat_deployment.pk].catalog_model == "smollm2-135m-instruct"  # type: ignore[attr-defined]
    assert models[chat_deployment.pk].availability == "instant"  # type: ignore[attr-defined]

    reply = sdk.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Say hi."}], max_tokens=16
    )
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.completion_tokens > 0

    chunks = list(
        sdk.chat.completions.create(
            model=chat_deployment.pk, messages=[{"role": "user", "content": "Count to five."}], max_tokens=24,
            stream=True,
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and text.strip()

    vectors = sdk.embeddings.create(model="smollm2-135m-embedding", input=["a cat", "a dog"]).data
    assert len(vectors) == 2 and len(vectors[0].embedding) == 576

    # llama.cpp's own answers miss fields OpenAI's schemas require; the gateway's do not.
    auth = {"Authorization": f"Bearer {alice.key}"}
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert_valid("CreateChatCompletionResponse", httpx.post(f"{server}/v1/chat/completions", json=body,
                                                            headers=auth, timeout=60).json())  # fmt: skip
    streamed = httpx.post(f"{server}/v1/chat/completions", json={**body, "stream": True}, headers=auth, timeout=60)
    for chunk in sse_documents(streamed.text):
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert "usage" not in chunk and "timings" not in chunk  # asked for by the gateway, not by the client
    embedded = httpx.post(f"{server}/v1/embeddings", json={"model": "smollm2-135m-embedding", "input": "x"},
                          headers=auth, timeout=60)  # fmt: skip
    assert_valid("CreateEmbeddingResponse", embedded.json())

    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="gpc_live_wrong", max_retries=0).models.list()
    malformed = httpx.post(
        f"{server}/v1/chat/completions", content=b"{nope", headers={"Authorization": f"Bearer {alice.key}"}
    )
    assert malformed.status_code == 400
    assert malformed.json() == {
        "error": {"message": "The request body is not valid JSON.", "type": "invalid_request_error",
                  "param": None, "code": None},
    }  # fmt: skip

    # A deployment key: its own deployment only.
    principal = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    _, scoped = api_key_create(
        principal=principal, name="customer", kind=ApiKeyKind.DEPLOYMENT, deployment_id=chat_deployment.pk
    )
    customer = openai.OpenAI(base_url=f"{server}/v1", api_key=scoped, max_retries=0, timeout=60)
    assert customer.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    ).choices
    with pytest.raises(openai.PermissionDeniedError):
        customer.embeddings.create(model="smollm2-135m-embedding", input="x")


def test_streams_are_relayed_as_they_arrive(server: str, alice: Persona, fleet: str) -> None:
    """The first chunk reaches the client long before the last one is generated (no buffering)."""
    fund(alice.org, 10 * USD)
    deploy(alice, "smollm2-135m-instruct")
    body: dict[str, Any] = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Write a long story about a robot."}],
        "max_tokens": 120,
        "stream": True,
    }
    arrivals = []
    start = time.monotonic()
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {alice.key}"}) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) > 20
    assert arrivals[0] < arrivals[-1] / 2  # streamed, not delivered in one piece at the end


def test_per_deployment_and_org_scoped_routes_stream(server: str, alice: Persona, charlie: Persona, fleet: str) -> None:
    fund(alice.org, 10 * USD)
    deployment = deploy(alice, "smollm2-135m-instruct")
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    for path in (f"/api/v1/deployments/{deployment.pk}", f"/api/v1/orgs/{alice.org.pk}/deployments/{deployment.pk}"):
        sdk = openai.OpenAI(base_url=f"{server}{path}", api_key=alice.key, max_retries=0, timeout=60)
        reply = sdk.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
        )  # the route names the deployment; `model` is not used to route
        assert reply.choices
        streamed = sdk.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, stream=True
        )
        assert len(list(streamed)) > 1
    stranger = httpx.post(f"{server}/api/v1/deployments/{deployment.pk}/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {charlie.key}"})  # fmt: skip
    wrong_org = httpx.post(f"{server}/api/v1/orgs/{charlie.org.pk}/deployments/{deployment.pk}/chat/completions",
                           json=body, headers={"Authorization": f"Bearer {alice.key}"})  # fmt: skip
    assert stranger.status_code == 404 and wrong_org.status_code == 404


def test_a_cut_stream_counts_the_prompt_as_llama_cpp_does(server: str, alice: Persona, fleet: str) -> None:
    """llama.cpp reports a stream's usage only at its end: a client that hangs up before it is
    metered with the prompt counted by the engine's own template and tokenizer."""
    fund(alice.org, 10 * USD)
    deployment = deploy(alice, "smollm2-135m-instruct")
    auth = {"Authorization": f"Bearer {alice.key}"}
    parts = [{"type": "text", "text": "Describe the sea at night, at length."}]
    prompts = [
        [{"role": "user", "content": "Write a long story about a robot."}],
        [{"role": "system", "content": "You answer in French."}, {"role": "user", "content": parts}],
    ]
    engine_counts = []
    for messages in prompts:
        whole = httpx.post(f"{server}/v1/chat/completions", headers=auth, timeout=60,
                           json={"model": deployment.pk, "messages": messages, "max_tokens": 1})  # fmt: skip
        engine_counts.append(whole.json()["usage"]["prompt_tokens"])
        body = {"model": deployment.pk, "messages": messages, "max_tokens": 200, "stream": True}
        with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=auth, timeout=60) as response:
            for received, _ in enumerate(line for line in response.iter_lines() if '"content"' in line):
                if received == 3:
                    break
    total = counters(deployment.pk, at_least=4)
    assert total["cut"] == 2
    assert total["prompt_tokens"] == 2 * sum(engine_counts)  # each prompt: its JSON call, then its cut stream
