"""Liveness of the platform's dependencies, for /healthz and operators."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)
HEARTBEAT_CACHE_KEY = "gpucloud:worker-heartbeat"


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def database_check() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        logger.warning("Health check: database unreachable: %s", exc)
        return Check(False, type(exc).__name__)  # details go to the log, not to anonymous callers
    return Check(True, connection.vendor)


def redis_check() -> Check | None:
    """None when no Redis is configured (embedded topology)."""
    if not settings.REDIS_URL:
        return None
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
    except redis.RedisError as exc:
        logger.warning("Health check: Redis unreachable: %s", exc)
        return Check(False, type(exc).__name__)
    return Check(True, "pong")


def heartbeat_record() -> None:
    cache.set(HEARTBEAT_CACHE_KEY, time.time(), timeout=None)


def heartbeat_age_seconds() -> float | None:
    """Seconds since a worker last ran the beat-scheduled heartbeat; None if never."""
    try:
        last = cache.get(HEARTBEAT_CACHE_KEY)
    except Exception:
        return None
    return None if last is None else max(0.0, time.time() - float(last))
