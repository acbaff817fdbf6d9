from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.invariants import ledger_violations


class Command(BaseCommand):
    help = (
        "Prove the ledger's invariants: every transaction sums to zero, every cached balance equals "
        "the sum of its entries, held credit equals the open holds. Exits 1 on any violation."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        violations = ledger_violations()
        for violation in violations:
            self.stderr.write(violation)
        if violations:
            raise CommandError(f"{len(violations)} ledger violation(s)")
        self.stdout.write(
            "Ledger OK: transactions balance, cached balances match entries, holds match held credit, "
            "daily usage matches entries."
        )
