"""A deployment's `endpoint_url` is where its engine's kind of request goes (issue 14): chat
completions for a chat model, embeddings for an embedding model."""

from __future__ import annotations

import pytest
from django.test import Client

from deployments.models import Deployment
from tests.support.pages import running
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("model", "operation"),
    [("smollm2-135m-instruct", "chat/completions"), ("smollm2-135m-embedding", "embeddings")],
)
def test_endpoint_url_names_what_the_engine_serves(
    client: Client, alice: Persona, catalog: None, model: str, operation: str
) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(model_id=model)
    shown = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert shown["endpoint_url"] == f"http://testserver/api/v1/deployments/{deployment.pk}/{operation}"
