"""Pages of pods: the "Create custom pod" form, a pod's page (status, machine, cost, volume, settings,
history, how to connect) and its stop / start / terminate. Thin: parse, call deployments.pods or a
selector, render. A refusal is shown beside the field (or button) it is about, nothing changed;
success redirects (post/redirect/get)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors as account_selectors
from accounts.auth import principal_from_session
from accounts.principal import Principal
from accounts.roles import CAN_WRITE, role_at_least
from accounts.ssh_keys import ssh_public_key_parse
from deployments import pods, rent, selectors
from deployments.models import Deployment
from deployments.pod_access import pod_addresses
from deployments.pod_settings import PodSettings
from deployments.pod_templates import pod_settings_of
from gpucloud.core.errors import ApiError, NotFound
from pages.form_urls import get_goes_to
from pages.marketplace import rented_message
from pages.pod_form import FIELD_OF_PARAM, FIELDS, PodForm, form_context


def pod_for_page(principal: Principal, pod_id: str) -> Deployment:
    try:
        return selectors.pod_get_for_org(principal.org, pod_id)
    except NotFound:
        raise Http404("No such pod in this organization.") from None


def _form_page(request: HttpRequest, principal: Principal, form: PodForm | None = None, status: int = 200,
               errors: dict[str, str] | None = None) -> HttpResponse:  # fmt: skip
    context = {**form_context(principal.org, form, errors or {}), "can_write": role_at_least(principal.role, CAN_WRITE)}
    return render(request, "deployments/pod_new.html", context, status=status)


@login_required
@require_GET
def pod_new(request: HttpRequest) -> HttpResponse:
    """The form; ?template=<id> fills it with that template's settings (404 for one that is not yours);
    ?offer=<off_id> with the offer's terms (the marketplace's Rent link) rents that offer."""
    principal = principal_from_session(request)
    template_id = request.GET.get("template", "")
    if request.GET.get("offer"):
        return _form_page(request, principal, PodForm.of_offer(request.GET))
    if not template_id:
        return _form_page(request, principal)
    try:
        template = selectors.template_get_for_org(principal.org, template_id, param="template")
    except ApiError as exc:
        raise Http404(exc.message) from exc
    return _form_page(request, principal, PodForm.of_template(template))


@get_goes_to("pod_new")
@login_required
@require_POST
def pod_create(request: HttpRequest) -> HttpResponse:
    """Create the pod from the form; a refusal re-renders the form with what was typed and the
    message beside the field the service named."""
    principal = principal_from_session(request)
    form = PodForm.posted(request.POST)
    try:
        asked = form.settings()
        if form.template:  # the template's secrets (a Jupyter token) are made for this pod, unless the form set them
            template = selectors.template_get_for_org(principal.org, form.template, param="template")
            asked = pod_settings_of(template, {f.name: getattr(asked, f.name) for f in fields(asked)})
        if form.offer:
            deployment = _pod_rent(principal, request, form.offer, asked)
        else:
            deployment = pods.pod_create(principal=principal, asked=asked)
            messages.success(request, f"Creating {deployment.name}: it shows as running here when its machine is up.")
    except ApiError as exc:
        field = FIELD_OF_PARAM.get(exc.param or "", exc.param or "")
        return _form_page(request, principal, form, exc.status, {field if field in FIELDS else "form": exc.message})
    return redirect("pod_detail", pod_id=deployment.pk)


def _pod_rent(principal: Principal, request: HttpRequest, offer_id: str, asked: PodSettings) -> Deployment:
    """The form's pod on a marketplace offer (its terms win over the form's choices), within the form's
    max price for a spot pod, else the offer's own price."""
    requested = rent.rent_offer_get(offer_id)
    ceiling = asked.max_price_micros or requested.price_per_hour_micros
    rental = rent.offer_rent_pod(principal=principal, requested=requested, asked=asked, ceiling_micros=ceiling)
    messages.success(request, rented_message(rental))
    return rental.deployment


def pod_page(
    request: HttpRequest, principal: Principal, deployment: Deployment, status: int = 200, **extra: object
) -> HttpResponse:
    prefetch_related_objects([deployment], "instances")  # the row, the timeline and the machine walk them
    pod = deployment.pod
    instances = sorted(deployment.instances.all(), key=lambda i: (i.created_at, i.pk))
    context = {
        **selectors.deployment_timeline(deployment),
        "pod": pod,
        "status": pod.status,
        "row": selectors.deployment_row(deployment),
        "machine": instances[-1] if instances else None,
        "env_names": sorted(pod.env),
        "http_ports": pod.port_numbers("http"),
        # JupyterLab opens with its token, for those who may change the pod (the token is a key to it).
        "jupyter_token": pod.env.get("JUPYTER_TOKEN") if role_at_least(principal.role, CAN_WRITE) else None,
        "ssh": pod_addresses(deployment).ssh if pod.status == "running" else None,
        "own_keys": [ssh_public_key_parse(line) for line in pod.ssh_public_keys],
        "org_keys": account_selectors.ssh_keys_of(principal.org),
        "can_write": role_at_least(principal.role, CAN_WRITE),
        **extra,
    }
    return render(request, "deployments/pod.html", context, status=status)


@login_required
@require_GET
def pod_detail(request: HttpRequest, pod_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    return pod_page(request, principal, pod_for_page(principal, pod_id))


def _act(
    request: HttpRequest, pod_id: str, action: Callable[..., Deployment], done: str, **options: bool
) -> HttpResponse:
    """Run a pod action from its page: a refusal (a role, a state, no capacity, no credit) is shown
    on the page by the buttons with its status; success comes back to the page."""
    principal = principal_from_session(request)
    deployment = pod_for_page(principal, pod_id)
    try:
        action(principal=principal, deployment=deployment, **options)
    except ApiError as exc:
        return pod_page(request, principal, pod_for_page(principal, pod_id), exc.status, action_error=exc.message)
    messages.success(request, done.format(name=deployment.name))
    return redirect("pod_detail", pod_id=deployment.pk)


@get_goes_to("pod_detail", keep=("pod_id",))
@login_required
@require_POST
def pod_stop(request: HttpRequest, pod_id: str) -> HttpResponse:
    return _act(request, pod_id, pods.pod_stop, "Stopping {name}: its machine goes, its volume stays.")


@get_goes_to("pod_detail", keep=("pod_id",))
@login_required
@require_POST
def pod_start(request: HttpRequest, pod_id: str) -> HttpResponse:
    return _act(request, pod_id, pods.pod_start, "Starting {name} again with the same image and settings.")


@login_required
@require_http_methods(["GET", "POST"])
def pod_terminate(request: HttpRequest, pod_id: str) -> HttpResponse:
    """GET asks for confirmation (and whether its volume goes too); POST terminates it."""
    if request.method == "GET":
        principal = principal_from_session(request)
        deployment = pod_for_page(principal, pod_id)
        return render(request, "deployments/pod_terminate.html", {"deployment": deployment, "pod": deployment.pod})
    delete_volume = request.POST.get("delete_volume") == "on"
    done = "Terminating {name}" + (" and deleting its volume." if delete_volume else ": its volume stays.")
    return _act(request, pod_id, pods.pod_terminate, done, delete_volume=delete_volume)
