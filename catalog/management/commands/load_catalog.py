from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from catalog.services import catalog_load


class Command(BaseCommand):
    help = "Load (or refresh) the built-in catalog: GPU types, regions, models, presets. Safe to re-run."

    def handle(self, *args: Any, **options: Any) -> None:
        result = catalog_load()
        self.stdout.write(f"Catalog loaded: {result.created} created, {result.updated} refreshed.")
