from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import principal_from_session
from accounts.roles import CAN_WRITE, role_at_least
from catalog import selectors
from catalog.models import CatalogModel, ModelCategory
from deployments.services import deployment_create
from gpucloud.errors import ApiError, InvalidRequest, NotFound


@login_required
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    category = request.GET.get("category") or None
    search = request.GET.get("q", "").strip()[:100]
    gpu_type = request.GET.get("gpu") or None
    try:
        models = list(selectors.models_list(category=category, search=search, gpu_type=gpu_type))
    except InvalidRequest:  # an unknown category from an old link: show everything rather than fail
        category, models = None, list(selectors.models_list(search=search, gpu_type=gpu_type))
    template = "catalog/catalog.html#models" if request.htmx else "catalog/catalog.html"  # type: ignore[attr-defined]
    context = {
        "groups": _by_category(models), "categories": ModelCategory.choices, "category": category, "search": search,
        "gpu_types": selectors.gpu_types_list(), "gpu_type": gpu_type,
    }  # fmt: skip
    return render(request, template, context)


def _by_category(models: list[CatalogModel]) -> list[tuple[str, list[CatalogModel]]]:
    """The models under their category's heading, categories in the catalog's order, empty ones left out."""
    return [
        (label, found)
        for value, label in ModelCategory.choices
        if (found := [m for m in models if m.category == value])
    ]


def _model_or_404(slug: str) -> CatalogModel:
    try:
        return selectors.model_get(slug)
    except NotFound:
        raise Http404("No such model in the catalog.") from None


def _model_page(request: HttpRequest, model: CatalogModel, status: int = 200, **form: object) -> HttpResponse:
    options = selectors.deploy_options(model)
    chosen = form.get("placement") or (options[0].key if options else "")
    context = {
        "model": model,
        "options": options,
        "chosen": chosen,
        "name": form.get("name") or model.slug,
        "replicas": form.get("replicas", 1),
        "presets": selectors.presets_for(options),
        "preset": form.get("preset", ""),
        "max_replicas": settings.GPUCLOUD_MAX_REPLICAS,
        "errors": form.get("errors", {}),
        "can_write": role_at_least(principal_from_session(request).role, CAN_WRITE),
    }
    return render(request, "catalog/model.html", context, status=status)


@login_required
@require_GET
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return _model_page(request, _model_or_404(slug))


@login_required
@require_POST
def model_deploy(request: HttpRequest, slug: str) -> HttpResponse:
    """One-click deploy: the form's GPU and region, replicas and name; refusals are shown in the
    form with what to do, and nothing is created."""
    model = _model_or_404(slug)
    name = request.POST.get("name", "").strip()[:100]
    placement = request.POST.get("placement", "")
    preset = request.POST.get("preset", "")
    gpu_type, _, region = placement.partition("@")
    form: dict[str, object] = {"name": name, "placement": placement, "preset": preset}
    try:
        replicas = int(request.POST.get("replicas", "1"))
    except ValueError:
        replicas = 0
    form["replicas"] = replicas
    if not gpu_type or not region:
        return _model_page(request, model, 400, **form, errors={"placement": "Choose a GPU and region."})
    try:
        deployment = deployment_create(
            principal=principal_from_session(request), name=name, model_id=model.slug, gpu_type=gpu_type,
            region=region, replicas=replicas, preset=preset or None,
        )  # fmt: skip
    except ApiError as exc:
        field = exc.param if exc.param in ("replicas", "gpu_type", "region", "preset") else "form"
        field = "placement" if field in ("gpu_type", "region") else field
        return _model_page(request, model, exc.status, **form, errors={field: _with_advice(exc)})
    messages.success(request, f"Deploying {model.name}: it shows as active here when its first replica is ready.")
    return redirect("deployment_detail", deployment_id=deployment.pk)


def _with_advice(exc: ApiError) -> str:
    """The refusal and what to do about it."""
    if exc.status == 402:
        return f"{exc.message} Add funds on the Billing page, then deploy again."
    if exc.status == 409:
        return f"{exc.message} Pick another GPU or region above."
    return exc.message
