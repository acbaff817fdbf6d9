"""GitHub sign-in exists only when GITHUB_CLIENT_ID/SECRET are set. Settings are read at
start-up, so each case runs in a fresh process with its own environment and SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
from django.test import Client
client = Client()
get = client.get("/accounts/github/login/")
post = client.post("/accounts/github/login/")
print(get.status_code, post.status_code, post.headers.get("Location", ""))
"""


def _probe(tmp_path: Path, **extra_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "GITHUB_CLIENT_ID")}
    env.update(GPUCLOUD_VAR_DIR=str(tmp_path), **extra_env)
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    migrated = run("migrate", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    result = run("shell", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_github_login_redirects_to_github_when_configured(tmp_path: Path) -> None:
    get, post, location = _probe(tmp_path, GITHUB_CLIENT_ID="Iv1.abc123", GITHUB_CLIENT_SECRET="s3cret").split(" ", 2)
    assert (get, post) == ("200", "302")
    assert location.startswith("https://github.com/login/oauth/authorize?")
    assert "client_id=Iv1.abc123" in location and "scope=user%3Aemail" in location


@pytest.mark.slow
def test_no_github_login_without_credentials(tmp_path: Path) -> None:
    assert _probe(tmp_path).split(" ")[:2] == ["404", "404"]
