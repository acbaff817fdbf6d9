"""The API key format: `gpc_live_` / `gpc_dep_` + 40 base62 characters + 6-character checksum.

- 40 base62 characters carry ~238 random bits.
- The checksum (CRC32 of prefix+random, base62) lets a secret scanner, or our own auth,
  reject a mistyped or made-up candidate offline, without a database lookup.
- Only SHA-256(key) is stored: the key is high-entropy, so a fast hash is safe, and it
  makes lookup an indexed equality.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass

from django.db import models


class ApiKeyKind(models.TextChoices):
    ACCOUNT = "account", "Account key"
    DEPLOYMENT = "deployment", "Deployment key"


ALPHABET = string.digits + string.ascii_letters
RANDOM_LENGTH = 40
CHECKSUM_LENGTH = 6
PREFIXES = {ApiKeyKind.ACCOUNT: "gpc_live_", ApiKeyKind.DEPLOYMENT: "gpc_dep_"}


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    key_hash: str
    last_four: str


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def key_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_generate(kind: ApiKeyKind) -> NewKey:
    body = PREFIXES[kind] + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    plaintext = body + _checksum(body)
    return NewKey(plaintext=plaintext, key_hash=key_hash(plaintext), last_four=plaintext[-4:])


def key_kind(candidate: str) -> ApiKeyKind | None:
    """The kind a well-formed key claims, or None when the text cannot be one of our keys."""
    kind = next((k for k, prefix in PREFIXES.items() if candidate.startswith(prefix)), None)
    if kind is None:
        return None
    prefix = PREFIXES[kind]
    secret = candidate[len(prefix) :]
    if len(secret) != RANDOM_LENGTH + CHECKSUM_LENGTH or any(ch not in ALPHABET for ch in secret):
        return None
    body, checksum = candidate[:-CHECKSUM_LENGTH], candidate[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return kind
