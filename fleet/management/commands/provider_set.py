from __future__ import annotations

import getpass
import json
import os
import sys
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Provider
from catalog.services import provider_credential_names, provider_save
from fleet.offers import offers_test
from fleet.providers.base import ProviderError
from fleet.providers.registry import DRIVERS, driver_class


class Command(BaseCommand):
    help = (
        "Add or update a provider (a GPU cloud account, a cluster) without the admin. The API key is read "
        "from standard input or an environment variable, stored sealed and never printed; it never goes in "
        "--config, which is stored in the clear. The provider is enabled unless --disable. With --test, "
        "list its offers now and store them, or say the provider's error."
    )
    stealth_options = ("stdin",)  # tests hand the key in as call_command(..., stdin=StringIO(...))

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The provider's id (a slug), e.g. runpod")
        parser.add_argument("--driver", help=f"One of {', '.join(DRIVERS)}, or a dotted path (required to add)")
        parser.add_argument("--name", help="What the operator pages call it (default: the slug)")
        parser.add_argument("--config", metavar="JSON", help="The driver's settings, a JSON object (replaces them)")
        key = parser.add_mutually_exclusive_group()
        key.add_argument("--api-key-stdin", action="store_true", help="Read the API key from standard input")
        key.add_argument("--api-key-env", metavar="VAR", help="Read the API key from this environment variable")
        parser.add_argument("--disable", action="store_true", help="Store it disabled (no offers, no launches)")
        parser.add_argument("--test", action="store_true", help="Then list its offers now and store them")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["driver"] is not None:
            try:
                driver_class(options["driver"])
            except ProviderError as exc:
                raise CommandError(f"{exc.message} Known drivers: {', '.join(DRIVERS)}.") from None
        config = _config(options["config"])
        api_key = _api_key(options, options.get("stdin") or sys.stdin)
        try:
            provider, created = provider_save(
                slug=options["slug"], enabled=not options["disable"], name=options["name"],
                driver=options["driver"], config=config, api_key=api_key,
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError(_invalid(exc)) from None
        self.stdout.write(_saved(provider, created))
        if options["test"]:
            self._test(provider)

    def _test(self, provider: Provider) -> None:
        test = offers_test(provider)
        if test.error is not None:
            raise CommandError(f"Test of {provider.slug} failed: {test.error}")
        gpus = ", ".join(sorted({o.gpu_type for o in test.listed})) or "none"
        self.stdout.write(f"Test of {provider.slug}: {len(test.listed)} offers listed ({gpus}); {test.stored} stored.")


def _config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--config is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CommandError('--config must be a JSON object, e.g. \'{"base_url": "https://api.runpod.io"}\'.')
    if "api_key" in config:  # the config is shown in the admin and stored in the clear
        raise CommandError("--config holds an api_key: pass the key with --api-key-stdin or --api-key-env.")
    return config


def _api_key(options: dict[str, Any], stdin: IO[str]) -> str:
    """The key asked for, or "" (keep the stored one); never echoed, never in an error."""
    if options["api_key_stdin"]:
        key = (getpass.getpass("API key: ") if stdin.isatty() else stdin.read()).strip()
        if not key:
            raise CommandError("--api-key-stdin: standard input held no key.")
        return key
    if options["api_key_env"]:
        key = os.environ.get(options["api_key_env"], "").strip()
        if not key:
            raise CommandError(f"--api-key-env: {options['api_key_env']} is not set or empty.")
        return key
    return ""


def _invalid(exc: ValidationError) -> str:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"provider": exc.messages}
    return "Not saved: " + "; ".join(f"{name}: {' '.join(errors)}" for name, errors in fields.items())


def _saved(provider: Provider, created: bool) -> str:
    stored = "API key stored sealed" if "api_key" in provider_credential_names(provider) else "no API key stored"
    state = "enabled" if provider.enabled else "disabled"
    verb = "Added" if created else "Updated"
    return f"{verb} provider {provider.slug} ({provider.name!r}, driver {provider.driver}, {state}); {stored}."
