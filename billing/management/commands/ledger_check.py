from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.invariants import ledger_violations
from billing.rollup import usage_days_rebuild


class Command(BaseCommand):
    help = (
        "Prove the ledger's invariants: every transaction sums to zero, every cached balance equals "
        "the sum of its entries, held credit equals the open holds, the daily usage rollup equals the "
        "usage entries. Exits 1 on any violation."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--rebuild-usage-days", action="store_true",
            help="First recompute the daily usage rollup from the entries (e.g. after an upgrade during "
            "which older processes posted usage).",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rebuild_usage_days"]:
            self.stdout.write(f"Daily usage rebuilt: {usage_days_rebuild()} org-day-service rows.")
        violations = ledger_violations()
        for violation in violations:
            self.stderr.write(violation)
        if violations:
            raise CommandError(f"{len(violations)} ledger violation(s)")
        self.stdout.write(
            "Ledger OK: transactions balance, cached balances match entries, holds match held credit, "
            "daily usage matches entries."
        )
