"""Deliveries are signed so that the standardwebhooks library and the API reference's verifier both
accept them, and a changed body, id or timestamp, or another subscription's secret, fails both."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.webhooks import reference_verify
from webhooks.signing import secret_generate, signature_headers


def test_both_verifiers_accept_our_signatures_and_refuse_tampering() -> None:
    secret, other = secret_generate(), secret_generate()
    assert secret.startswith("whsec_") and secret != other
    body = json.dumps({"type": "deployment.active", "data": {"deployment_id": "dep_1"}}).encode()
    now = int(time.time())
    headers = signature_headers(secret=secret, message_id="msg_1", timestamp=now, body=body)

    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert reference_verify(body, headers["X-Signature"], secret)

    tampered = body.replace(b"dep_1", b"dep_2")
    for payload, sent, key in ((tampered, headers, secret), (body, {**headers, "webhook-id": "msg_2"}, secret),
                               (body, {**headers, "webhook-timestamp": str(now + 1)}, secret),
                               (body, headers, other)):  # fmt: skip
        with pytest.raises(WebhookVerificationError):
            Webhook(key).verify(payload, sent)
    assert not reference_verify(tampered, headers["X-Signature"], secret)
    assert not reference_verify(body, headers["X-Signature"], other)


def test_a_stale_timestamp_is_refused_by_the_standard_verifier() -> None:
    secret = secret_generate()
    body = b"{}"
    stale = signature_headers(secret=secret, message_id="msg_1", timestamp=int(time.time()) - 3600, body=body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)
