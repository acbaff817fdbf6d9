"""The templates page: the built-in pod templates (read-only) and the organization's own, each a start
for a new pod; save and delete the org's own. Thin: parse, call deployments.pod_templates or a selector,
render. A refusal re-renders the page with the message beside the field it names and what was typed;
success redirects (post/redirect/get). Env values are never shown, only their names."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import principal_from_session
from accounts.principal import Principal
from accounts.roles import CAN_WRITE, role_at_least
from deployments import pod_templates, selectors
from deployments.pod_templates import PodTemplate
from gpucloud.core.errors import ApiError, NotFound
from pages.form_urls import get_goes_to
from pages.pod_form import argv_of_line, env_of_lines, whole

# The form's fields, named as the service's ApiError.param names them (args and env.X fold into theirs).
FIELDS = ("name", "description", "image", "ports", "env", "command", "container_disk_gb", "volume_mount_path",
          "volume_size_gb")  # fmt: skip
BLANK = {**dict.fromkeys(FIELDS, ""), "container_disk_gb": "20", "volume_mount_path": "/workspace"}


@dataclass(frozen=True)
class TemplateRow:
    """One template as the page lists it: its command as a shell line and its variables' names only."""

    template: PodTemplate
    command: str
    env_names: list[str]


def _row(template: PodTemplate) -> TemplateRow:
    return TemplateRow(template, shlex.join([*template.command, *template.args]), sorted(template.env))


def _page(request: HttpRequest, principal: Principal, status: int = 200, **extra: object) -> HttpResponse:
    context = {
        "rows": [_row(t) for t in selectors.templates_of(principal.org)],
        "can_write": role_at_least(principal.role, CAN_WRITE),
        "create": BLANK,
        **extra,
    }
    return render(request, "deployments/templates.html", context, status=status)


def _field(param: str | None) -> str:
    if param == "args":
        return "command"
    if param and param.startswith("env."):
        return "env"
    return param if param in FIELDS else "form"  # the field it is about, else above the form


def _asked(typed: dict[str, str]) -> PodTemplate:
    size = typed["volume_size_gb"]
    return PodTemplate(
        id="", name=typed["name"], description=typed["description"], image=typed["image"],
        command=argv_of_line(typed["command"]), ports=typed["ports"].replace(",", " ").split(),
        env=env_of_lines(typed["env"]), container_disk_gb=whole(typed["container_disk_gb"], "container_disk_gb"),
        volume_mount_path=typed["volume_mount_path"] or "/workspace",
        volume_size_gb=whole(size, "volume_size_gb") if size else None,
    )  # fmt: skip


@login_required
@require_GET
def templates_page(request: HttpRequest) -> HttpResponse:
    return _page(request, principal_from_session(request))


@get_goes_to("templates")
@login_required
@require_POST
def template_create(request: HttpRequest) -> HttpResponse:
    principal = principal_from_session(request)
    typed = {name: request.POST.get(name, "") for name in FIELDS}
    typed = {name: value if name in ("env", "description") else value.strip() for name, value in typed.items()}
    try:
        template = pod_templates.template_create(principal=principal, asked=_asked(typed))
    except ApiError as exc:
        error = {"message": exc.message, "field": _field(exc.param)}
        return _page(request, principal, exc.status, create=typed, create_error=error)
    messages.success(request, f"Saved template {template.name}: create a pod from it below.")
    return redirect(reverse("templates") + f"#{template.id}")


@get_goes_to("templates")
@login_required
@require_POST
def template_delete(request: HttpRequest, template_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    try:
        template = selectors.template_get_for_org(principal.org, template_id)
    except NotFound:
        raise Http404("No such template in this organization.") from None
    try:
        pod_templates.template_delete(principal=principal, template=template)
    except ApiError as exc:
        return _page(request, principal, exc.status, row_error={"template": template.id, "message": exc.message})
    messages.success(request, f"Deleted template {template.name}: pods made from it keep their settings.")
    return redirect("templates")
