"""REST endpoints of pod templates (reference/003): /api/v1/templates, the built-ins and the org's own."""

from __future__ import annotations

from dataclasses import asdict

from django.http import HttpRequest
from ninja import Router, Status

from accounts.auth import api_principal
from accounts.roles import CAN_READ
from deployments import pod_templates, schemas, selectors
from deployments.pod_templates import PodTemplate
from gpucloud.core.errors import answers

router = Router(tags=["templates"])


def _template_out(template: PodTemplate) -> dict[str, object]:
    shown = asdict(template)
    shown["generated_env"] = list(shown.pop("secret_env"))
    return shown


@router.get("/templates", response=list[schemas.TemplateOut], summary="Pod templates: the built-ins, then yours")
def templates_list(request: HttpRequest) -> list[dict[str, object]]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing templates")
    return [_template_out(t) for t in selectors.templates_of(principal.org)]


@router.post(
    "/templates",
    response={201: schemas.TemplateOut},
    summary="Save a pod template",
    description="An image and its settings under a name, checked as a pod's are (400 naming the field). POST /pods "
    "with `template` set to its id starts from them.",
)
@answers(400)
def templates_create(request: HttpRequest, payload: schemas.TemplateCreateIn) -> Status[dict[str, object]]:
    asked = PodTemplate(id="", **payload.dict())
    template = pod_templates.template_create(principal=api_principal(request), asked=asked)
    return Status(201, _template_out(template))


@router.get("/templates/{template_id}", response=schemas.TemplateOut, summary="One template")
def templates_get(request: HttpRequest, template_id: str) -> dict[str, object]:
    principal = api_principal(request)
    principal.require(CAN_READ, "reading templates")
    return _template_out(selectors.template_get_for_org(principal.org, template_id))


@router.delete(
    "/templates/{template_id}",
    response={204: None},
    summary="Delete a template",
    description="Pods created from it keep their settings. 403 for a built-in (read-only, the same for everyone).",
)
def templates_delete(request: HttpRequest, template_id: str) -> Status[None]:
    principal = api_principal(request)
    template = selectors.template_get_for_org(principal.org, template_id)
    pod_templates.template_delete(principal=principal, template=template)
    return Status(204, None)
