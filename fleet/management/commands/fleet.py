from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fleet.models import Instance
from fleet.reconciler import fleet_reconcile


class Command(BaseCommand):
    help = "List instances by provider and state; with --reap, run the reconciler once first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reap", action="store_true", help="Reconcile now: reap orphans, record lost instances")
        parser.add_argument("--all", action="store_true", help="Also list terminated and failed instances")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reap"]:
            report = fleet_reconcile()
            self.stdout.write(
                f"Reconciled: {len(report.reaped)} reaped, {len(report.adopted)} adopted, {len(report.lost)} lost, "
                f"{len(report.confirmed)} terminations confirmed."
            )
            for error in report.errors:
                self.stderr.write(f"provider error: {error}")
        instances = Instance.objects.select_related("deployment").order_by("provider", "state", "created_at")
        if not options["all"]:
            instances = instances.exclude(state__in=["terminated", "failed"])
        counts = Counter((i.provider or "-", i.state) for i in instances)
        for (provider, state), count in sorted(counts.items()):
            self.stdout.write(f"{provider:12} {state:22} {count}")
        for i in instances:
            self.stdout.write(
                f"  {i.pk}  {i.provider or '-':10} {i.state:20} {i.deployment.org_id}  {i.deployment.name}  "
                f"{i.provider_instance_id or '-'}"
            )
        if not counts:
            self.stdout.write("No instances.")
