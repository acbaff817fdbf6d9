"""The operator's provider pages: a row per cloud account or cluster, its API key written once and
never shown again (sealed at rest), enable/disable, a "test connection" action, and the map of the
cloud's GPU and region names the driver uses (margins and the rest live in the JSON config)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from catalog.models import Provider
from catalog.services import provider_credential_names, provider_credentials_set
from fleet import offers
from fleet.providers.base import ProviderError
from fleet.providers.cloud.gpus import GPU_NAMES, REGION_NAMES
from fleet.providers.registry import DRIVERS, driver_class


class ProviderForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The cloud account's API key (kubernetes: the bearer token used with config's host): stored "
        "sealed, never shown again. Blank keeps the stored one.",
    )

    class Meta:
        model = Provider
        fields = ["slug", "name", "driver", "enabled", "config"]
        help_texts = {
            "driver": f"One of {', '.join(DRIVERS)}, or a dotted path to a driver class.",
            "config": 'Settings, e.g. {"base_url": "https://api.runpod.io", "margins": {"h100": 1.2, "*": 1.25}, '
            '"regions": ["atl1"], "allow_from": ["203.0.113.7/32"]}. See README, "Providers".',
        }

    def clean_driver(self) -> str:
        name = str(self.cleaned_data["driver"])
        try:
            driver_class(name)
        except ProviderError as exc:
            raise forms.ValidationError(exc.message) from exc
        return name


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["slug", "name", "driver", "enabled", "stored_credentials", "offer_count"]
    list_filter = ["enabled", "driver"]
    readonly_fields = ["stored_credentials", "name_map"]
    actions = ["test_connection"]

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        provider_credentials_set(obj, {"api_key": form.cleaned_data.get("api_key", "")})

    @admin.display(description="Credentials")
    def stored_credentials(self, obj: Provider) -> str:
        names = provider_credential_names(obj)
        return f"stored: {', '.join(names)}" if names else "none stored"

    @admin.display(description="Offers")
    def offer_count(self, obj: Provider) -> int:
        return obj.offers.count()

    @admin.display(description="GPU and region names")
    def name_map(self, obj: Provider) -> Any:
        """The cloud's names the driver maps to the catalog's slugs (plus this provider's overrides)."""
        gpus = {**GPU_NAMES.get(obj.driver, {}), **dict(obj.config.get("gpu_names") or {})}
        regions = {**REGION_NAMES.get(obj.driver, {}), **dict(obj.config.get("region_names") or {})}
        rows = [(name, slug) for name, slug in sorted(gpus.items())] + [(n, s) for n, s in sorted(regions.items())]
        if not rows:
            return "(the driver uses the catalog's slugs)"
        return format_html_join("", "<div><code>{}</code> &rarr; <code>{}</code></div>", rows)

    @admin.action(description="Test connection (list offers now)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            test = offers.offers_test(provider)
            if test.error is not None:
                self.message_user(request, f"{provider.name} ({provider.slug}): {test.error}", messages.ERROR)
                continue
            gpus = json.dumps(sorted({o.gpu_type for o in test.listed}))
            summary = f"connected; {len(test.listed)} offers ({gpus}), {test.stored} stored."
            self.message_user(request, f"{provider.name} ({provider.slug}): {summary}")
