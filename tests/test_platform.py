"""Settings helpers, health, the JSON error shape outside ninja, and `check --deploy`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from deployments.models import Deployment, DeploymentStatus
from gpucloud.core.env import env_bool, env_int, parse_database_url
from gpucloud.core.money import usd_text
from gpucloud.templatetags.gpucloud import usd
from tests.support.personas import Persona

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_and_int_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_FLAG", "Yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_NUM", "12a")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_NUM", 5, minimum=1)


def test_database_url_parsing() -> None:
    parsed = parse_database_url("postgres://u%40x:p%2Fw@db.example:6432/gpu?sslmode=require")
    assert parsed == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "gpu",
        "USER": "u@x",
        "PASSWORD": "p/w",
        "HOST": "db.example",
        "PORT": "6432",
        "OPTIONS": {"sslmode": "require"},
    }
    with pytest.raises(ImproperlyConfigured, match="scheme 'mysql'"):
        parse_database_url("mysql://x/y")
    with pytest.raises(ImproperlyConfigured, match="names no database"):
        parse_database_url("postgres://host:5432/")


def test_usd_text_is_exact() -> None:
    assert usd_text(4_410_000) == "4.41"
    assert usd_text(5) == "0.00" and usd_text(5_000) == "0.01"
    assert usd_text(-1_234_567) == "-1.23"


def test_money_on_pages_follows_one_rule_exact_to_the_micro_dollar() -> None:
    # gpucloud/core/money.py: exact, trailing zeros dropped down to cents; nothing rounded, so a
    # balance of $4.998501 never reads $5.00 on one page and $4.998501 on the next.
    assert usd(24_996_612) == "$24.996612" and usd(25_000_000) == "$25.00" and usd(4_998_501) == "$4.998501"
    assert usd(-1_500) == "-$0.0015" and usd(833) == "$0.000833" and usd(50_000) == "$0.05" and usd(None) == "—"
    assert usd(0) == "$0.00" and usd(-5_000_000) == "-$5.00"


def test_healthz_reports_database(client: Client, db: None) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"]["ok"] is True


def test_healthz_is_503_when_redis_is_unreachable(client: Client, db: None, settings: object) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # type: ignore[attr-defined]
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == {"ok": False, "detail": "ConnectionError"}
    assert "127.0.0.1" not in response.content.decode()  # no internal addresses to anonymous callers


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="only in the distributed topology (REDIS_URL set)")
def test_healthz_checks_configured_redis(client: Client, db: None) -> None:
    assert client.get("/healthz").json()["checks"]["redis"] == {"ok": True, "detail": "pong"}


def test_unknown_api_path_is_json_404(client: Client) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"type": "not_found_error", "message": "No endpoint GET /api/v1/no-such-thing."}
    }


def test_openapi_docs_are_served(client: Client) -> None:
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/me", "/api/v1/api-keys", "/api/v1/api-keys/{key_id}/regenerate", "/api/v1/models/{slug}"):
        assert path in schema["paths"]


def test_pages_require_sign_in(client: Client, db: None) -> None:
    for path in ("/dashboard/", "/catalog/", "/api-keys/", "/organization/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {
            "DEBUG": "0",
            "SECRET_KEY": "x7$Kq!9vP2#mZr8Lw4@Tn6^Yb1&Hc5*Jd3(Fg0)Se-As_Qe+Wr=Ty",
            "ALLOWED_HOSTS": "gpucloud.example.com",
            "GPUCLOUD_VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_refuses_the_dev_secret_key(tmp_path: Path) -> None:
    result = _manage(["check"], {"DEBUG": "0", "ALLOWED_HOSTS": "x.example", "GPUCLOUD_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=0" in result.stderr


def test_bad_env_value_stops_start_up(tmp_path: Path) -> None:
    result = _manage(["check"], {"DEBUG": "perhaps", "GPUCLOUD_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DEBUG='perhaps' is not a boolean" in result.stderr


def test_a_second_server_on_a_taken_port_stops_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _manage(["serve", "--port", str(port)], {"GPUCLOUD_VAR_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is taken" in result.stderr and "make run PORT=8001" in result.stderr
    # Nothing started, so nothing was stopped: a gpucloud serving there keeps its engines.
    assert "Celery" not in result.stderr + result.stdout and "serving on" not in result.stdout


@pytest.mark.slow
def test_each_embedded_platform_tags_its_engines_apart(tmp_path: Path) -> None:
    def tag(env: dict[str, str]) -> str:
        shown = _manage(["shell", "-c", "from django.conf import settings; print(settings.GPUCLOUD_FLEET_TAG)"], env)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.strip().splitlines()[-1]

    one, two = {"GPUCLOUD_VAR_DIR": str(tmp_path / "one")}, {"GPUCLOUD_VAR_DIR": str(tmp_path / "two")}
    assert tag(one) == tag(one) != tag(two)  # stable per var/, apart between checkouts
    assert tag(one).startswith("gpucloud-")
    assert tag({**one, "GPUCLOUD_FLEET_TAG": "mine"}) == "mine"
    shared = {**one, "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")}
    assert tag(shared) == "gpucloud"  # processes sharing a database share the tag


def test_dashboard_counts_running_deployments(client: Client, alice: Persona) -> None:
    running = Deployment.objects.create(org=alice.org, name="a", status=DeploymentStatus.ACTIVE)
    stopped = Deployment.objects.create(org=alice.org, name="b", status=DeploymentStatus.STOPPED)
    client.force_login(alice.user)
    client.post("/organization/switch", {"org_id": alice.org.pk})
    page = client.get("/dashboard/").content.decode()
    assert 'Active deployments</span><span class="stat-value">1<' in page
    assert f'id="status-{running.pk}"' in page and f'id="status-{stopped.pk}"' not in page
