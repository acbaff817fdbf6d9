from __future__ import annotations

import io

import pytest
from allauth.account.models import EmailAddress
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import ApiKey, Organization, User


def test_create_user_prints_a_working_key_last(client: Client, db: None) -> None:
    out = io.StringIO()
    call_command(
        "create_user",
        "ops@example.com",
        "--password",
        "a-long-password-1",
        "--org",
        "Ops",
        "--api-key",
        "cli",
        stdout=out,
    )
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("gpc_live_")
    user = User.objects.get(email="ops@example.com")
    assert user.check_password("a-long-password-1")
    assert EmailAddress.objects.get(user=user).verified is True
    me = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert me["current_organization"]["name"] == "Ops" and me["current_organization"]["role"] == "owner"
    assert client.login(email="ops@example.com", password="a-long-password-1")


def test_create_user_refuses_a_duplicate_and_changes_nothing(db: None) -> None:
    call_command("create_user", "ops@example.com", stdout=io.StringIO())
    counts = (User.objects.count(), Organization.objects.count(), ApiKey.objects.count())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_user", "OPS@example.com", "--api-key", "x", stdout=io.StringIO())
    assert (User.objects.count(), Organization.objects.count(), ApiKey.objects.count()) == counts
