"""What the platform's outbound HTTP clients share: one verifying TLS context per process. httpx
builds one for every client it makes unless it is given one, and building one loads the CA bundle
(about 20 ms of CPU); the cloud drivers make a client per driver, the engine health check and the
webhook delivery one per call. A context is safe to share between clients and threads."""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def tls_context(*, trust_env: bool) -> ssl.SSLContext:
    """The context httpx would build for a client with this `trust_env` (which decides whether
    SSL_CERT_FILE or SSL_CERT_DIR replace the CA bundle)."""
    return httpx.create_ssl_context(trust_env=trust_env)
