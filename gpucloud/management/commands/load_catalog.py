from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from catalog.services import catalog_load
from fleet.offers import offers_refresh_all


class Command(BaseCommand):
    help = (
        "Load (or refresh) the built-in catalog: GPU types, regions, models, presets; then refresh every "
        "provider's stored offers, so a fresh platform offers GPUs at once. Safe to re-run."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = catalog_load()
        self.stdout.write(f"Catalog loaded: {result.created} created, {result.updated} refreshed.")
        # Here, not in catalog_load: the catalog sits below the fleet, whose drivers list the offers.
        for slug, stored in offers_refresh_all().items():
            said = "not refreshed (provider error; see the log)" if stored is None else f"{stored} stored"
            self.stdout.write(f"Offers of {slug}: {said}.")
