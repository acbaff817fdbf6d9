"""Public identifiers: a type prefix and random base32 text (`org_...`, `key_...`, `dep_...`).

Random rather than sequential so ids leak nothing about volume and cannot be guessed.
The named wrappers exist because migrations must reference a model field's default by name.
"""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str) -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower().rstrip("=")
    return f"{prefix}_{raw}"


def new_org_id() -> str:
    return new_id("org")


def new_key_id() -> str:
    return new_id("key")


def new_deployment_id() -> str:
    return new_id("dep")


def new_pod_id() -> str:
    return new_id("pod")


def new_service_id() -> str:
    """A container endpoint's (reference/002's inference service)."""
    return new_id("svc")


def new_volume_id() -> str:
    return new_id("vol")


def new_template_id() -> str:
    return new_id("tpl")


def new_invitation_id() -> str:
    return new_id("inv")


def new_ssh_key_id() -> str:
    return new_id("sshkey")
