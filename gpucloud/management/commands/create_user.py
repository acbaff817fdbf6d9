from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts import services
from accounts.models import ApiKeyKind
from accounts.principal import Principal
from accounts.roles import Role
from billing.services import credit_grant, usd_to_micros
from gpucloud.core.errors import ApiError
from gpucloud.core.money import usd_display


class Command(BaseCommand):
    help = (
        "Create a verified user with a personal organization (or a named one they own). "
        "With --api-key, the new account key is the last line of output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password", help="Leave out for a user who signs in by password reset or GitHub")
        parser.add_argument("--org", help="Also create an organization with this name, owned by the user")
        parser.add_argument("--api-key", metavar="NAME", help="Create an account API key with this name")
        parser.add_argument("--credit", metavar="USD", help="Grant this much credit to the new organization")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():  # all or nothing: no user without the credit asked for
                self._create(options)
        except ApiError as exc:
            raise CommandError(exc.message) from None

    def _create(self, options: dict[str, Any]) -> None:
        user, org = services.user_create(email=options["email"], password=options["password"], org_name=options["org"])
        self.stdout.write(f"Created user {user.email} (id {user.pk}) in organization {org.name!r} ({org.pk}).")
        if options["credit"]:
            amount = usd_to_micros(options["credit"], param="credit")
            credit_grant(org=org, amount_micros=amount, reason="Initial credit (create_user)")
            self.stdout.write(f"Granted {usd_display(amount)} of credit.")
        if options["api_key"]:
            principal = Principal(user=user, org=org, role=Role.OWNER)
            key, plaintext = services.api_key_create(
                principal=principal, name=options["api_key"], kind=ApiKeyKind.ACCOUNT
            )
            self.stdout.write(f"Account API key {key.pk} ({key.name!r}); it is shown only now:")
            self.stdout.write(plaintext)
