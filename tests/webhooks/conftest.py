from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from deployments.models import Deployment
from tests.conftest import Persona
from tests.webhooks.receiver import Receiver, receiver_running


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """A receiver on loopback, which the operator's allow-list admits (as WEBHOOK_ALLOWED_HOSTS would)."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    yield from receiver_running()


def subscribe(client: Client, persona: Persona, deployment: Deployment, **body: Any) -> Any:
    return client.post(f"/api/v1/deployments/{deployment.pk}/webhooks", data=json.dumps(body),
                       content_type="application/json", **persona.auth)  # fmt: skip
