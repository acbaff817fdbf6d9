"""The one shape of a deployment page's section form (scaling, SLA, preset, access, webhooks): a
signed-in POST about one deployment of the session's org (a GET of its address goes to the
section); the section's action calls a service; a refusal (ApiError) re-renders the deployment page
with the section's error, the field it names and what was typed, nothing saved; success goes back
to the section (or the action answers itself)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.auth import principal_from_session
from accounts.principal import Principal
from deployments.models import Deployment
from gpucloud.core.errors import ApiError
from pages.deployments.views import deployment_for_page, detail_page
from pages.form_urls import get_goes_to


@dataclass
class SectionPost:
    """What a section's action gets: who posts, about which deployment, and the form. The action
    fills `posted` with the values to show again if the change is refused."""

    request: HttpRequest
    principal: Principal
    deployment: Deployment
    posted: dict[str, object] = field(default_factory=dict)

    @property
    def form(self) -> QueryDict:
        return self.request.POST

    def page(self, **context: object) -> HttpResponse:
        """The deployment page with `context` added (a notice, a secret shown once)."""
        return detail_page(self.request, self.principal, self.deployment, 200, **context)


Action = Callable[..., HttpResponse | None]


def section_form(section: str, *, anchor: str) -> Callable[[Action], Callable[..., HttpResponse]]:
    """Make `action(post, **url_kwargs)` a page view of the section named `section` (the template's
    `<section>_error`, `<section>_param`, `<section>_posted`); `anchor` is where success lands."""

    def wrap(action: Action) -> Callable[..., HttpResponse]:
        @get_goes_to("deployment_detail", keep=("deployment_id",), anchor=anchor)
        @login_required
        @require_POST
        @wraps(action)
        def view(request: HttpRequest, deployment_id: str, **kwargs: Any) -> HttpResponse:
            principal = principal_from_session(request)
            post = SectionPost(request, principal, deployment_for_page(principal, deployment_id))
            try:
                answer = action(post, **kwargs)
            except ApiError as exc:
                refused = {f"{section}_error": exc.message, f"{section}_param": exc.param or "",
                           f"{section}_posted": post.posted}  # fmt: skip
                return detail_page(request, principal, post.deployment, exc.status, **refused)
            return answer or redirect(reverse("deployment_detail", args=[post.deployment.pk]) + anchor)

        return view

    return wrap
