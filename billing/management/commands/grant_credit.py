from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization, User
from billing import selectors
from billing.services import credit_grant, usd_to_micros
from gpucloud.core.errors import ApiError
from gpucloud.core.money import usd_display


class Command(BaseCommand):
    help = (
        "Grant credit (an adjustment with a reason) to an organization, given by its id or by a user's email "
        "(their personal organization). A negative amount corrects a balance downwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("target", help="org_... id, or a user's email")
        parser.add_argument("usd", help="Amount in USD, e.g. 25 or 12.50")
        parser.add_argument("--reason", required=True, help="Why, for the ledger and the customer's statement")

    def handle(self, *args: Any, **options: Any) -> None:
        org = _organization(options["target"])
        try:
            amount = usd_to_micros(options["usd"], param="usd")
            posting = credit_grant(org=org, amount_micros=amount, reason=options["reason"])
        except ApiError as exc:
            raise CommandError(exc.message) from None
        balance = selectors.balance_of(org)
        self.stdout.write(
            f"Granted {usd_display(amount)} to {org.name} ({org.pk}), transaction {posting.transaction.pk}; "
            f"available now {usd_display(balance.available_micros)}."
        )


def _organization(target: str) -> Organization:
    if "@" in target:
        user = User.objects.filter(email__iexact=target).first()
        org = Organization.objects.filter(created_by=user, is_personal=True).first() if user else None
    else:
        org = Organization.objects.filter(pk=target).first()
    if org is None:
        raise CommandError(f"No organization or user {target!r}.")
    return org
