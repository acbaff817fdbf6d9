"""`model` naming a Hugging Face id (`org/name`) that the caller's org has no deployment of: with
the operator allowing it (GPUCLOUD_HF_MODELS), a cold endpoint is made for it
(deployments/hf_cold.py) and the request goes on as any request for a cold deployment (gateway/wake.py:
woken with its first minute held, then held or answered 202). Refusals are in OpenAI's shape:
400 for no id or no size in its name, 403 when it is not allowed, 402 without credit, 503
`no_capacity` when no spot GPU it fits is offered, 503 `deployment_failed` while the org's last
deployment of it stands failed."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from accounts.models import Organization, User
from accounts.principal import Principal
from accounts.selectors import membership_for
from catalog.hf_models import is_hf_id
from catalog.models import ModelCategory
from deployments.hf_cold import HfDeploymentFailed, hf_deployment_for_request
from gateway import errors
from gateway.keys import Caller
from gateway.routing import Route, route_for
from gpucloud.core.errors import ApiError

NO_CAPACITY_RETRY_SECONDS = 60  # offers are refreshed about every minute (GPUCLOUD_OFFERS_REFRESH_SECONDS)


async def route_or_cold_start(caller: Caller, model: str, categories: frozenset[str]) -> Route:
    """The route for `model`; a Hugging Face id the org has no deployment of is deployed cold first."""
    try:
        return await route_for(caller, model)
    except errors.GatewayError as exc:
        if exc.status != 404 or not is_hf_id(model):
            raise
    if ModelCategory.LLM not in categories:
        raise errors.bad_request(
            f"A Hugging Face model starts on its first chat or text completion; '{model}' is not deployed "
            "for this endpoint.",
            param="model",
        )
    if caller.allowed is not None:
        raise errors.forbidden(
            f"This key may call only the deployments granted to it; deploy '{model}' with an account key first."
        )
    try:
        await sync_to_async(_deploy)(caller, model)
    except ApiError as exc:
        raise _refusal(exc) from None
    return await route_for(caller, model, fresh=True)


def _deploy(caller: Caller, model: str) -> None:
    org = Organization.objects.get(pk=caller.org_id)
    user = User.objects.filter(pk=caller.user_id).first() if caller.user_id is not None else None
    membership = membership_for(user, org.pk) if user is not None else None
    if membership is None:
        raise errors.forbidden(f"This key acts for nobody in the organization, so it cannot deploy '{model}'.")
    hf_deployment_for_request(principal=Principal(user=user, org=org, role=membership.role), hf_id=model)


def _refusal(exc: ApiError) -> errors.GatewayError:
    if exc.status == 402:
        return errors.GatewayError(
            402, f"Starting this model needs credit: {exc.message}", type_="insufficient_quota",
            code="insufficient_balance",
        )  # fmt: skip
    if exc.type == HfDeploymentFailed.type:  # as a wake that fails answers (gateway/wake.py)
        return errors.GatewayError(503, exc.message, type_="server_error", code="deployment_failed")
    if exc.status == 409:  # no GPU it fits is offered: the fleet's state, worth a retry
        return errors.GatewayError(
            503, exc.message, type_="server_error", code="no_capacity",
            headers={"Retry-After": str(NO_CAPACITY_RETRY_SECONDS)},
        )  # fmt: skip
    return errors.GatewayError(exc.status, exc.message, type_="invalid_request_error", code=exc.type, param="model")
