"""No page's query count grows with what the org holds: each page is read at a small and a larger
scale of deployments, replicas, events, keys, SSH keys, members, invitations and ledger entries, and must
issue the same number of queries (an N+1 would add one per row)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts import services as account_services
from accounts.models import ApiKeyKind, Membership
from accounts.principal import Principal
from accounts.roles import Role
from billing.services import credit_grant
from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentStatus
from deployments.pod_templates import PodTemplate, template_create
from tests.support.pages import running, running_pod, signed_in
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

pytestmark = pytest.mark.django_db

PAGES = ["/dashboard/", "/deployments/", "/billing/", "/catalog/", "/catalog/smollm2-135m-instruct/",
         "/api-keys/", "/ssh-keys/", "/organization/", "{detail}", "/pods/", "/pods/new", "/volumes/",
         "/templates/", "{pod}", "/marketplace/"]  # fmt: skip


def grow(persona: Persona, detail: Deployment, scale: int, start: int, pod: Deployment) -> None:
    """Add `scale` of everything the pages list, numbered from `start`."""
    owner = Principal(user=persona.user, org=persona.org, role=Role.OWNER)
    for n in range(start, start + scale):
        deployment = running(persona, f"d{n}", replicas=2)
        running_pod(persona, f"p{n}", volume_gb=n + 1)  # a pod on its volume: both lists, the form's volumes
        if n % 2:
            deployment_transition(deployment, DeploymentStatus.DEGRADED, "A replica is down.")
        credit_grant(org=persona.org, amount_micros=1_000_000, reason=f"grant {n}")
        account_services.api_key_create(principal=owner, name=f"k{n}", kind=ApiKeyKind.ACCOUNT)
        account_services.api_key_create(principal=owner, name=f"dk{n}", kind=ApiKeyKind.DEPLOYMENT,
                                        deployment_id=detail.pk)  # fmt: skip
        account_services.invitation_create(principal=owner, email=f"guest{n}@example.com", role="viewer")
        account_services.ssh_key_add(principal=owner, public_key=ssh_line(comment=f"k{n}"))
        template_create(principal=owner, asked=PodTemplate(id="", name=f"t{n}", image="gpucloud/shell"))
        user, _ = account_services.user_create(email=f"member{n}@example.com", password=None)
        Membership.objects.create(org=persona.org, user=user, role=Role.MEMBER)
        for shown in (detail, pod):  # their history: one more event and one more ended machine each
            deployment_transition(shown, DeploymentStatus.SCALING if n % 2 else DeploymentStatus.ACTIVE, f"step {n}")
            shown.instances.create(
                state="terminated", provider="local", provider_instance_id=f"old{n}", tag="t", api_key="k",
                endpoint_url="http://x", hourly_price_micros=1,
            )  # fmt: skip


def counts(client: Client, detail: Deployment, pod: Deployment) -> dict[str, int]:
    found = {}
    for page in PAGES:
        path = page.format(detail=f"/deployments/{detail.pk}/", pod=f"/pods/{pod.pk}/")
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path).status_code == 200, path
        found[page] = len(queries)
    return found


def test_no_page_reads_more_queries_as_the_org_grows(
    alice: Persona, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    detail, pod = running(alice, "detail"), running_pod(alice, "pod")
    client = signed_in(alice)
    grow(alice, detail, 2, 0, pod)
    counts(client, detail, pod)  # first visits write once (the session, the billing profile)
    small = counts(client, detail, pod)
    grow(alice, detail, 8, 2, pod)
    large = counts(client, detail, pod)
    assert large == small
    assert max(small.values()) <= 21, small  # the detail page reads the most: 21 today
