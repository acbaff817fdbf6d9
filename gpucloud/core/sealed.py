"""Secrets the platform stores but must not keep readable (a GPU cloud's API key): sealed with Fernet
(AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key from the environment.

GPUCLOUD_CREDENTIALS_KEY holds one or more Fernet keys, comma-separated: the first seals, every one
opens (rotate by putting a new key first, re-saving the providers, then dropping the old one). Make
one with `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.
Without it the key is derived from SECRET_KEY (HKDF-SHA256), so the embedded default works with no
setting at all; then whoever has SECRET_KEY and the database has the credentials too, which is why
production sets its own (README, "Providers").
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DERIVATION_INFO = b"gpucloud provider credentials"


class SealBroken(Exception):
    """A sealed value that no configured key opens (the key changed, or the value was tampered with)."""


def seal(values: dict[str, Any]) -> str:
    return _fernet(_keys()).encrypt(json.dumps(values).encode()).decode()


def unseal(token: str) -> dict[str, Any]:
    """The sealed values; {} for an empty token."""
    if not token:
        return {}
    try:
        opened = json.loads(_fernet(_keys()).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SealBroken("No configured GPUCLOUD_CREDENTIALS_KEY opens these credentials.") from exc
    if not isinstance(opened, dict):
        raise SealBroken("The sealed credentials are not a mapping.")
    return opened


def _keys() -> tuple[str, ...]:
    return tuple(settings.GPUCLOUD_CREDENTIALS_KEYS) or (_derived(settings.SECRET_KEY),)


def _derived(secret_key: str) -> str:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DERIVATION_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())).decode()


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:  # says what is wrong with the key, never the key
        raise ImproperlyConfigured(f"GPUCLOUD_CREDENTIALS_KEY holds a key that is not a Fernet key: {exc}") from exc
