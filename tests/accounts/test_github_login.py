"""GitHub sign-in exists only when GITHUB_CLIENT_ID/SECRET are set. Settings are read at
start-up, so each case runs in a fresh process with its own environment and SQLite file."""

from __future__ import annotations

import os
import shutil
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


def _run(var_dir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "GITHUB_CLIENT_ID")}
    env.update(GPUCLOUD_VAR_DIR=str(var_dir), **extra_env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite database for both cases (GitHub's provider app has no tables of its own)."""
    var_dir = tmp_path_factory.mktemp("migrated")
    migrated = _run(var_dir, "migrate", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    return var_dir / "gpucloud.sqlite3"


def _probe(migrated: Path, tmp_path: Path, **extra_env: str) -> str:
    shutil.copy(migrated, tmp_path / migrated.name)
    result = _run(tmp_path, "shell", "-c", PROBE, **extra_env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_github_login_redirects_to_github_when_configured(migrated: Path, tmp_path: Path) -> None:
    answer = _probe(migrated, tmp_path, GITHUB_CLIENT_ID="Iv1.abc123", GITHUB_CLIENT_SECRET="s3cret")
    get, post, location = answer.split(" ", 2)
    assert (get, post) == ("200", "302")
    assert location.startswith("https://github.com/login/oauth/authorize?")
    assert "client_id=Iv1.abc123" in location and "scope=user%3Aemail" in location


@pytest.mark.slow
def test_no_github_login_without_credentials(migrated: Path, tmp_path: Path) -> None:
    assert _probe(migrated, tmp_path).split(" ")[:2] == ["404", "404"]
