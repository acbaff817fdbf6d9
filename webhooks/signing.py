"""How webhook deliveries are signed, so receivers can trust them.

Each subscription has its own secret, `whsec_` + base64 of 24 random bytes (the Standard Webhooks
form). A delivery carries both:
- Standard Webhooks headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and
  `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body" keyed by the decoded secret>`,
  which the `standardwebhooks` libraries verify (the timestamp bounds replays);
- `X-Signature: sha256=<hex HMAC-SHA256 of the body keyed by the secret string>`, the simple form
  the API reference's verifier checks (reference/000).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 24


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_headers(*, secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secrets start with whsec_")
    key = base64.b64decode(secret[len(SECRET_PREFIX) :])
    signed = f"{message_id}.{timestamp}.".encode() + body
    standard = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    simple = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{standard}",
        "X-Signature": f"sha256={simple}",
    }
