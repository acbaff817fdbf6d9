"""What `model` names on /v1 (issue 14): a deployment id always reaches that deployment; a catalog
name only when it names exactly one deployment the key may call, else a 400 naming the candidates'
ids before anything is woken, held or forwarded. /v1/models lists every deployment the key may call
by id, and catalog models the org has not deployed but could start, as cold."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from catalog.models import CatalogModel
from catalog.selectors import deploy_options
from deployments.models import Deployment
from fleet.models import Instance
from tests.fakes.engine_server import EngineThread
from tests.support.billing import fund
from tests.support.fleet import platform_load
from tests.support.gateway import serving_deployment
from tests.support.openai_schema import assert_valid
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)


def chat(server: str, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=20)  # fmt: skip


def test_a_deployment_id_reaches_its_own_deployment_even_beside_another_of_the_same_model(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    fund(alice.org, 10_000_000)
    dedicated_engine = engines()
    serving_deployment(alice, [dedicated_engine])  # ready, dedicated
    cold = serving_deployment(alice, [], status="scaled_to_zero")  # the serverless one, asleep
    Deployment.objects.filter(pk=cold.pk).update(desired_replicas=0, cold_start_wait_seconds=0)
    from_its_snippet = chat(server, alice.key, cold.pk)
    assert from_its_snippet.status_code == 202  # not answered by the ready one: the cold one wakes
    assert from_its_snippet.json()["deployment_id"] == cold.pk
    assert dedicated_engine.engine.records == []
    assert Instance.objects.filter(deployment=cold).count() == 1


def test_a_catalog_name_of_several_deployments_is_a_400_naming_them_and_wakes_nothing(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    engine = engines()
    ready = serving_deployment(alice, [engine])
    cold = serving_deployment(alice, [], status="scaled_to_zero")
    response = chat(server, alice.key, "smollm2-135m-instruct")
    assert response.status_code == 400
    error = response.json()["error"]
    assert_valid("ErrorResponse", response.json())
    assert (error["param"], error["code"], error["type"]) == ("model", "model_ambiguous", "invalid_request_error")
    assert ready.pk in error["message"] and cold.pk in error["message"]
    assert engine.engine.records == [] and not Instance.objects.filter(deployment=cold).exists()


def test_a_catalog_name_of_one_deployment_still_resolves(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    engine = engines()
    serving_deployment(alice, [engine])
    stopped = serving_deployment(alice, [], status="stopped")  # gone, not a candidate
    assert chat(server, alice.key, "smollm2-135m-instruct").status_code == 200
    assert len(engine.engine.records) == 1
    assert chat(server, alice.key, stopped.pk).status_code == 404


def test_models_lists_each_deployment_by_id_and_startable_catalog_models_as_cold(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    platform_load()  # the catalog and the local provider's offers
    first = serving_deployment(alice, [engines()])
    second = serving_deployment(alice, [], status="scaled_to_zero")
    auth = {"Authorization": f"Bearer {alice.key}"}
    listed = httpx.get(f"{server}/v1/models", headers=auth).json()
    assert_valid("ListModelsResponse", listed)
    deployed = [(m["id"], m["catalog_model"], m["availability"]) for m in listed["data"] if m["deployment_id"]]
    assert deployed == [(first.pk, "smollm2-135m-instruct", "instant"), (second.pk, "smollm2-135m-instruct", "cold")]
    startable = sorted(
        m.slug for m in CatalogModel.objects.exclude(slug="smollm2-135m-instruct")
        if any(o.available > 0 for o in deploy_options(m))
    )  # fmt: skip
    assert startable  # the local provider runs the small models on this machine
    catalog = [m for m in listed["data"] if m["deployment_id"] is None]
    assert sorted(m["id"] for m in catalog) == startable
    assert {m["availability"] for m in catalog} == {"cold"}
    one = httpx.get(f"{server}/v1/models/{second.pk}", headers=auth).json()
    assert (one["id"], one["availability"]) == (second.pk, "cold")
    several = httpx.get(f"{server}/v1/models/smollm2-135m-instruct", headers=auth)
    assert several.status_code == 200, several.text
    assert several.json()["deployment_ids"] == [second.pk, first.pk] and several.json()["deployment_id"] is None
    assert several.json()["availability"] == "instant"  # the best of the two


def test_an_embedding_deployments_endpoint_url_serves_embeddings(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine], model="smollm2-135m-embedding")
    for prefix in ("/api/v1", f"/api/v1/orgs/{alice.org.pk}"):
        response = httpx.post(f"{server}{prefix}/deployments/{deployment.pk}/embeddings", json={"input": "hi"},
                              headers={"Authorization": f"Bearer {alice.key}"}, timeout=20)  # fmt: skip
        assert response.status_code == 200, response.text
        assert_valid("CreateEmbeddingResponse", response.json())
        # Its URL has no chat endpoint (404); on /v1 the body names it for the wrong endpoint (400).
        chat = httpx.post(f"{server}{prefix}/deployments/{deployment.pk}/chat/completions",
                          json={"messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {alice.key}"}, timeout=20)  # fmt: skip
        assert chat.status_code == 404 and "serves embeddings; it has no" in chat.json()["error"]["message"]
    body = {"model": deployment.pk, "messages": [{"role": "user", "content": "hi"}]}
    wrong = httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {alice.key}"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "model"
    assert len(engine.engine.records) == 2
