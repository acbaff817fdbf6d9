"""Pages of deployments: the list, one deployment in detail, stopping one (with a confirmation
step that works without JavaScript). Thin: parse, call a service or selector, render."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import grants
from accounts import selectors as selectors_keys
from accounts import services as key_services
from accounts.auth import principal_from_session
from accounts.models import ApiKeyKind
from accounts.principal import Principal
from accounts.roles import CAN_MANAGE_ACCESS, CAN_WRITE, role_at_least
from deployments import metrics, selectors, services
from deployments.containers import container_command
from deployments.logs import log_tails
from deployments.models import Deployment, DeploymentKind, DeploymentStatus
from deployments.redeploy import deployment_redeploy
from gpucloud.core.errors import ApiError, NotFound
from pages.deployments.cost_comparison import cost_comparison
from pages.deployments.scaling_section import settings_context
from pages.form_urls import get_goes_to
from webhooks.events import EVENT_TYPES, SUBSCRIBABLE
from webhooks.selectors import webhooks_for_page


def deployment_for_page(principal: Principal, deployment_id: str) -> Deployment:
    try:
        return selectors.deployment_get_for_org(principal.org, deployment_id)
    except NotFound:
        raise Http404("No such deployment in this organization.") from None


LIST_PAGE = 50
NEW_KEY_SESSION_KEY = "deployment_new_key"  # a key's secret between its POST and the page that shows it once
ENDED_OR_ENDING = (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED, DeploymentStatus.FAILED)


@login_required
@require_GET
def deployments_list(request: HttpRequest) -> HttpResponse:
    """The org's deployments and pods, newest first, LIST_PAGE at a time (`?page=`)."""
    return _list_page(request, kind=None)


@login_required
@require_GET
def pods_list(request: HttpRequest) -> HttpResponse:
    """The org's pods only (terminated ones too), as the deployments list shows them."""
    return _list_page(request, kind=DeploymentKind.POD)


def _list_page(request: HttpRequest, *, kind: str | None) -> HttpResponse:
    org = principal_from_session(request).org
    total = selectors.deployments_count(org, kind=kind)
    pages = max(1, -(-total // LIST_PAGE))
    try:
        number = min(max(int(request.GET.get("page", "1")), 1), pages)
    except ValueError:  # not a number: the first page
        number = 1
    rows = selectors.deployment_rows(org, offset=(number - 1) * LIST_PAGE, limit=LIST_PAGE, kind=kind)
    first = (number - 1) * LIST_PAGE + 1
    context = {
        "pods_only": kind == DeploymentKind.POD,
        "rows": rows,
        "total": total,
        "page": number,
        "pages": pages,
        "first": first,
        "last": first + len(rows) - 1,
    }
    return render(request, "deployments/list.html", context)


def detail_page(
    request: HttpRequest, principal: Principal, deployment: Deployment, status: int = 200, **extra: object
) -> HttpResponse:
    now = timezone.now()
    day_ago = now - timedelta(hours=24)
    # Its replicas are read once: the row, the timeline, uptime and GPU cost all walk them.
    prefetch_related_objects([deployment], "instances")
    row = selectors.deployment_row(deployment, now=now)
    can_write = role_at_least(principal.role, CAN_WRITE)
    hours = metrics.hours_between(deployment, day_ago, now)  # read once for the figures and the charts
    stats = metrics.deployment_window(deployment, since=day_ago, until=now, hours=hours)
    series = metrics.deployment_series(deployment, since=day_ago, until=now, hours=hours)
    context = {
        **selectors.deployment_timeline(deployment),
        "row": row,
        "stats": stats,
        "uptime": metrics.uptime_ratio(deployment, since=day_ago, until=now),
        "chart": {
            "hours": [p.start.isoformat() for p in series],
            "requests": [p.requests for p in series],
            "errors": [p.errors for p in series],
            "latency_avg": [p.latency_ms_avg for p in series],
            "latency_p95": [p.latency_ms_p95 for p in series],
        },
        "comparison": cost_comparison(
            stats, hourly_rate_micros=deployment.hourly_price_micros, model_slug=deployment.model_id
        ),
        "keys": [
            k for k in selectors_keys.api_keys_of(principal.org).filter(deployment=deployment) if not k.is_revoked
        ],
        "base_url": request.build_absolute_uri("/v1"),
        "container": _container_facts(request, deployment),
        "model_name": deployment.pk,  # always exact: a catalog name may name several deployments
        "live_endpoint": deployment.status not in ENDED_OR_ENDING,
        "embeddings": deployment.model is not None and deployment.model.category == "embedding",
        "runtime": timedelta(seconds=row.runtime_seconds) if deployment.started_at or row.runtime_seconds else None,
        "held_micros": selectors.first_minute_held_micros(deployment),
        # Stopping, stopped or failed: forms that would change it (keys, grants, webhooks) are gone.
        "ended": deployment.status in ENDED_OR_ENDING,
        "can_write": can_write,
        "webhooks": webhooks_for_page(deployment.pk),
        "grants": grants.grants_of(deployment),
        "grantable_keys": grants.grantable_keys(deployment),
        "can_manage_access": role_at_least(principal.role, CAN_MANAGE_ACCESS),
        "webhook_event_types": {name: EVENT_TYPES[name] for name in SUBSCRIBABLE["deployment"]},
        **settings_context(deployment, now=now, can_write=can_write, extra=extra),
        **extra,
    }
    return render(request, "deployments/detail.html", context, status=status)


def _container_facts(request: HttpRequest, deployment: Deployment) -> dict[str, object] | None:
    """A container endpoint's image, command, port and URL (gateway/service_proxy.py); None for others."""
    if deployment.kind != DeploymentKind.CONTAINER:
        return None
    pod = deployment.pod
    return {
        "url": request.build_absolute_uri(f"/services/{deployment.pk}/"),
        "image": pod.image,
        "command": container_command(pod),
        "port": pod.port_numbers("http")[0],
    }


@login_required
@require_GET
def deployment_detail(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    return detail_page(request, principal, deployment, 200, **_new_key_once(request, deployment))


@get_goes_to("deployment_detail", keep=("deployment_id",), anchor="#key-h")
@login_required
@require_POST
def deployment_key(request: HttpRequest, deployment_id: str) -> HttpResponse:
    """Create a key for this deployment, or regenerate one of its keys (`key_id`): the page shows
    the secret once, filled into the quick-start snippets."""
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    key_id = request.POST.get("key_id", "")
    try:
        if key_id:
            key = selectors_keys.api_key_get_for_org(principal.org, key_id)
            if key.deployment_id != deployment.pk:
                raise NotFound("No such key on this deployment.", param="key_id")
            key, plaintext = key_services.api_key_regenerate(principal=principal, key=key)
        else:
            key, plaintext = key_services.api_key_create(
                principal=principal, name=f"{deployment.name} key", kind=ApiKeyKind.DEPLOYMENT,
                deployment_id=deployment.pk,
            )  # fmt: skip
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, key_error=exc.message)
    # Post/redirect/get: a reload shows the page, never posts again (a second key, or a regenerate
    # that silently kills the secret just copied). The secret rides in the session to the next
    # page view of this deployment only, and leaves it there (shown once).
    request.session[NEW_KEY_SESSION_KEY] = {"deployment": deployment.pk, "key": plaintext, "key_id": key.pk}
    return redirect(reverse("deployment_detail", args=[deployment.pk]) + "#key-h")


def _new_key_once(request: HttpRequest, deployment: Deployment) -> dict[str, str]:
    """The secret of the key just made for this deployment, taken out of the session (once)."""
    made = request.session.get(NEW_KEY_SESSION_KEY)
    if not made or made.get("deployment") != deployment.pk:
        return {}
    del request.session[NEW_KEY_SESSION_KEY]
    return {"new_key": made["key"], "new_key_id": made["key_id"]}


@login_required
@require_GET
def deployment_logs(request: HttpRequest, deployment_id: str) -> HttpResponse:
    """The replicas' log tails as plain text: the page's live log without JavaScript."""
    deployment = deployment_for_page(principal_from_session(request), deployment_id)
    parts = [f"== {pk} ==\n" + "\n".join(lines) for pk, lines in log_tails(deployment, tail=500).items()]
    body = "\n\n".join(parts) or "No replica has written logs yet."
    return HttpResponse(body + "\n", content_type="text/plain; charset=utf-8")


@login_required
@require_http_methods(["GET", "POST"])
def deployment_stop(request: HttpRequest, deployment_id: str) -> HttpResponse:
    """GET asks for confirmation; POST tears the deployment down (billing stops as each replica's
    termination is confirmed)."""
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    if request.method == "GET":
        return render(
            request, "deployments/stop.html", {"deployment": deployment, "row": selectors.deployment_row(deployment)}
        )
    try:
        services.deployment_delete(principal=principal, deployment=deployment)
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Stopping {deployment.name}: billing ends as each replica's shutdown is confirmed.")
    return redirect("deployment_detail", deployment_id=deployment.pk)


@login_required
@require_POST
def deployment_redeploy_view(request: HttpRequest, deployment_id: str) -> HttpResponse:
    """ "Deploy again" on a stopped deployment: a new one with the same settings, shown at once;
    a refusal (credit, capacity) is shown on the stopped one's page and creates nothing."""
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    try:
        created = deployment_redeploy(principal=principal, deployment=deployment)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, redeploy_error=exc.message)
    messages.success(request, f"Deployed {created.name} again as {created.pk}, with {deployment.pk}'s settings.")
    return redirect("deployment_detail", deployment_id=created.pk)
