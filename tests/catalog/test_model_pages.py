"""A model's page and one-click deploy: the cheapest GPU that fits and has capacity is preselected
with its price per hour and per day; a deploy creates the deployment and opens it; a refusal is
shown in the form, says what to do, and creates nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from deployments.models import Deployment, DeploymentKind, DeploymentStatus
from fleet import tasks
from tests.support.billing import fund, ledger_snapshot
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:

    started: list[str] = []
    monkeypatch.setattr(tasks.instance_provision_task, "delay", lambda instance_id: started.append(instance_id))
    return started


def deploy(client: Client, **form: object) -> Any:
    return client.post("/catalog/smollm2-135m-instruct/deploy", {"placement": "cpu@local", "replicas": 1, **form})


def test_the_model_page_preselects_the_cheapest_gpu_with_capacity(alice: Persona, fleet: str) -> None:
    page = signed_in(alice).get("/catalog/smollm2-135m-instruct/").content.decode()
    assert 'value="cpu@local" checked' in page
    assert "$0.05/hr ($1.20/day)" in page and "cheapest with capacity" in page
    assert signed_in(alice).get("/catalog/no-such-model/").status_code == 404
    # catalog ids may hold dots; a model no provider can host says so instead of offering nothing
    big = signed_in(alice).get("/catalog/llama-3.1-8b-instruct/").content.decode()
    assert "Nothing can run this model here yet, so there is nothing to deploy" in big
    assert (
        "needs a GPU provider with 24 GB of GPU memory" in big
        and 'action="/catalog/llama-3.1-8b-instruct/deploy"' not in big
    )


def test_one_click_deploy_creates_and_opens_the_deployment(
    alice: Persona, fleet: str, launches: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    with django_capture_on_commit_callbacks(execute=True):
        response = deploy(signed_in(alice), name="my chat", replicas=2)
    deployment = Deployment.objects.get(org=alice.org)
    assert response.status_code == 302 and response["Location"] == f"/deployments/{deployment.pk}/"
    assert (deployment.name, deployment.model_id, deployment.gpu_type_id, deployment.desired_replicas) == (
        "my chat", "smollm2-135m-instruct", "cpu", 2,
    )  # fmt: skip
    assert len(launches) == 2


def test_the_deploy_page_says_its_choices_are_on_demand_on_either_tier(
    alice: Persona, fleet: str, launches: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    """The placement choices quote on-demand offers of either tier, and a deploy from them asks for
    just that: the page says so, as the deployment's page then does."""
    page = signed_in(alice).get("/catalog/smollm2-135m-instruct/").content.decode()
    assert (
        "Every choice here runs on on-demand machines, on the secure or the community tier, whichever is "
        "cheaper; spot machines or one tier are asked for through the API (<code>spot</code>, <code>cloud_type</code>)."
    ) in page
    fund(alice.org, 5 * USD)
    with django_capture_on_commit_callbacks(execute=True):
        deploy(signed_in(alice))
    deployment = Deployment.objects.get(org=alice.org)
    assert (deployment.spot, deployment.cloud_type) == (False, "any")


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"replicas": 0}, 400, "replicas must be between 1 and 8"),
        ({"replicas": "many"}, 400, "replicas must be between 1 and 8"),
        ({"placement": ""}, 400, "Choose a GPU and region."),
        ({"placement": "h100@atl1"}, 409, "No provider offers NVIDIA H100 in atl1"),
        ({"kind": "serverless", "idle_minutes": "soon"}, 400, "Idle minutes must be a number"),
        ({"kind": "serverless", "idle_minutes": "0.5"}, 400, "Idle minutes must be between 1 and 10080 (a week)."),
        ({"kind": "spot"}, 400, "kind must be model or serverless."),
    ],
)
def test_bad_input_is_shown_in_the_form_and_creates_nothing(
    alice: Persona, fleet: str, launches: list[str], form: dict[str, object], status: int, says: str
) -> None:
    fund(alice.org, 5 * USD)
    before = ledger_snapshot()
    response = deploy(signed_in(alice), **form)
    assert response.status_code == status and says in response.content.decode()
    assert not Deployment.objects.exists() and launches == [] and ledger_snapshot() == before


def test_no_credit_says_once_to_ask_the_operator_when_card_payments_are_off(
    alice: Persona, fleet: str, launches: list[str]
) -> None:
    response = deploy(signed_in(alice))
    page = response.content.decode().split('<main id="main"')[1]  # the header shows the balance too
    assert response.status_code == 402
    assert "Your available balance is $0.00: ask the operator of this gpucloud for credit" in page
    assert page.lower().count("add funds") == 0 and page.count("$0.00") == 1  # said once, no dead end
    assert not Deployment.objects.exists() and launches == []


def test_no_credit_says_once_to_add_funds_when_stripe_is_configured(
    alice: Persona, fleet: str, launches: list[str], settings: Any
) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_configured"  # nothing calls Stripe on this path
    response = deploy(signed_in(alice))
    page = response.content.decode().split('<main id="main"')[1]
    assert response.status_code == 402
    assert "Your available balance is $0.00: add funds on the Billing page, then launch again." in page
    assert page.count("add funds on the Billing page") == 1 and page.count("$0.00") == 1
    assert not Deployment.objects.exists() and launches == []


def test_no_estimate_is_shown_for_a_replica_count_that_is_refused(alice: Persona, fleet: str) -> None:
    fund(alice.org, 5 * USD)
    refused = deploy(signed_in(alice), replicas=10**20).content.decode()
    estimate = refused.split('id="deploy-estimate"')[1].split("</p>")[0]
    assert "$" not in estimate and "between 1 and 8 replicas" in estimate
    assert "replicas must be between 1 and 8" in refused
    assert not Deployment.objects.exists()


def test_the_estimate_before_launch_covers_the_asked_replicas(alice: Persona, fleet: str) -> None:
    page = signed_in(alice).get("/catalog/smollm2-135m-instruct/").content.decode()
    assert "Estimated cost: <strong>$0.05/hr</strong> ($1.20/day) for 1 replica while running." in page
    refused = deploy(signed_in(alice), replicas=3)  # no credit: the form comes back with the choice kept
    assert (
        "Estimated cost: <strong>$0.15/hr</strong> ($3.60/day) for 3 replicas while running."
        in refused.content.decode()
    )


def test_a_serverless_deployment_from_the_page_scales_to_zero_after_its_idle_minutes(
    alice: Persona, fleet: str, launches: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    with django_capture_on_commit_callbacks(execute=True):
        response = deploy(signed_in(alice), kind="serverless", idle_minutes="5")
    deployment = Deployment.objects.get(org=alice.org)
    assert response.status_code == 302 and deployment.kind == DeploymentKind.SERVERLESS
    assert deployment.scale_to_zero and deployment.idle_timeout_seconds == 300 and len(launches) == 1


def test_a_cold_start_from_the_page_launches_and_holds_nothing(alice: Persona, fleet: str, launches: list[str]) -> None:
    before = ledger_snapshot()
    response = deploy(signed_in(alice), kind="serverless", start_cold="on")  # no credit needed to exist
    deployment = Deployment.objects.get(org=alice.org)
    assert response.status_code == 302 and deployment.status == DeploymentStatus.SCALED_TO_ZERO
    assert launches == [] and ledger_snapshot() == before
