"""Changes of who may call what, announced when they commit, so the gateway's caches of keys and
sessions (gateway/keys.py, gateway/sessions.py) drop what they hold in every gateway process at
once, rather than within their time to live.

A change names a key (revoked, regenerated, a grant of it added or removed) or a member of an org
(removed, or given another role: their account keys and signed-in sessions act with it). It goes to
this process's listeners directly and, in the distributed topology, over Redis pub/sub to every
other process, where the gateway's subscriber (gateway/access_listener.py) hands it to theirs.
Publishing is best effort: when Redis cannot take it, the caches' time to live still bounds how
long the change takes to show.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)
PUBLISH_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class AccessChange:
    key_id: str | None = None
    user_id: int | None = None  # with org_id: a member's role or membership in that org
    org_id: str | None = None
    everything: bool = False  # a listener that may have missed changes forgets all it holds

    def concerns(self, *, key_id: str | None, user_id: int | None, org_id: str | None) -> bool:
        """Whether a cached caller with these ids may be stale after this change."""
        if self.everything:
            return True
        if self.key_id is not None and key_id == self.key_id:
            return True
        return self.user_id is not None and user_id == self.user_id and org_id == self.org_id

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, data: bytes | str) -> AccessChange | None:
        """The change a message carries; None for one this version cannot read."""
        try:
            fields = json.loads(data)
            return cls(**fields) if isinstance(fields, dict) else None
        except (ValueError, TypeError):
            return None


Listener = Callable[[AccessChange], None]
_listeners: list[Listener] = []
_client: redis.Redis | None = None


def listen(listener: Listener) -> None:
    """Call `listener` with every change announced in this process or (with Redis) in any other.
    It may be called from any thread: it must only drop cache entries."""
    if listener not in _listeners:
        _listeners.append(listener)


def notify(change: AccessChange) -> None:
    """Hand `change` to this process's listeners (the subscriber does, for changes from elsewhere)."""
    for listener in list(_listeners):
        try:
            listener(change)
        except Exception:
            logger.exception("access change listener failed")


def channel() -> str:
    """The pub/sub channel of this installation. Channels are not per Redis database, so the
    database number is part of the name: installations sharing one Redis server stay apart."""
    return f"gpucloud:{_redis().connection_pool.connection_kwargs.get('db', 0)}:access-changed"


def access_change_announce(change: AccessChange) -> None:
    """Announce `change` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _announce(change))


def _announce(change: AccessChange) -> None:
    notify(change)
    if not settings.REDIS_URL:
        return
    try:
        _redis().publish(channel(), change.encode())
    except redis.RedisError:
        logger.warning("access change not published; other processes see it within their cache TTL", exc_info=True)


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS
        )
    return _client
