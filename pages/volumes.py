"""The volumes page: the org's storage volumes with their price, cost and pods; create, grow and delete
them. Thin: parse, call deployments.volumes or a selector, render. A refusal re-renders the page with
the message beside the form it is about and what was typed; success redirects (post/redirect/get)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import principal_from_session
from accounts.principal import Principal
from accounts.roles import CAN_WRITE, role_at_least
from catalog.selectors import regions_list
from deployments import selectors, volumes
from deployments.models import Volume
from gpucloud.core.errors import ApiError, InvalidRequest, NotFound
from pages.form_urls import get_goes_to
from pages.pod_form import storage_prices


def _page(request: HttpRequest, principal: Principal, status: int = 200, **extra: object) -> HttpResponse:
    context = {
        "rows": selectors.volume_rows(principal.org),
        "regions": regions_list(),
        "can_write": role_at_least(principal.role, CAN_WRITE),
        "storage": storage_prices(),
        "max_gb": settings.GPUCLOUD_VOLUME_MAX_GB,
        "create": {"name": "", "size_gb": "20", "region": ""},
        **extra,
    }
    return render(request, "deployments/volumes.html", context, status=status)


def _volume_for_page(principal: Principal, volume_id: str) -> Volume:
    try:
        return selectors.volume_get_for_org(principal.org, volume_id)
    except NotFound:
        raise Http404("No such volume in this organization.") from None


def _size(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"{text[:20]!r} is not a whole number of GB.", param="size_gb") from None


@login_required
@require_GET
def volumes_page(request: HttpRequest) -> HttpResponse:
    return _page(request, principal_from_session(request))


@get_goes_to("volumes")
@login_required
@require_POST
def volume_create(request: HttpRequest) -> HttpResponse:
    principal = principal_from_session(request)
    typed = {name: request.POST.get(name, "").strip() for name in ("name", "size_gb", "region")}
    try:
        volume = volumes.volume_create(
            principal=principal, name=typed["name"], size_gb=_size(typed["size_gb"]), region=typed["region"]
        )
    except ApiError as exc:
        field = exc.param if exc.param in typed else "form"  # the field it is about, else above the form
        error = {"message": exc.message, "field": field}
        return _page(request, principal, exc.status, create=typed, create_error=error)
    messages.success(request, f"Creating volume {volume.name}: available once its provider has made it.")
    return redirect(reverse("volumes") + f"#{volume.pk}")


@get_goes_to("volumes")
@login_required
@require_POST
def volume_grow(request: HttpRequest, volume_id: str) -> HttpResponse:
    typed = request.POST.get("size_gb", "").strip()
    done = "Growing {name} to " + typed + " GB: billed at the new size once it has grown."
    return _on_row(request, volume_id, lambda p, v: volumes.volume_grow(principal=p, volume=v, size_gb=_size(typed)),
                   done, typed)  # fmt: skip


@get_goes_to("volumes")
@login_required
@require_POST
def volume_delete(request: HttpRequest, volume_id: str) -> HttpResponse:
    done = "Deleting {name} and its data: billing stops when its provider confirms."
    return _on_row(request, volume_id, lambda p, v: volumes.volume_delete(principal=p, volume=v), done)


def _on_row(request: HttpRequest, volume_id: str, action: Callable[[Principal, Volume], Volume], done: str,
            typed: str = "") -> HttpResponse:  # fmt: skip
    """A change asked from the volume's row: a refusal is shown under that row, with what was typed."""
    principal = principal_from_session(request)
    volume = _volume_for_page(principal, volume_id)
    try:
        action(principal, volume)
    except ApiError as exc:
        error = {"volume": volume.pk, "message": exc.message, "size_gb": typed}
        return _page(request, principal, exc.status, row_error=error)
    messages.success(request, done.format(name=volume.name))
    return redirect(reverse("volumes") + f"#{volume.pk}")
