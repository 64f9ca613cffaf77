"""Remember event ids for a while, so a redelivered event is handled once.

Redis (``SET NX EX``) when configured, so every API replica agrees; in-process otherwise.
"""

from __future__ import annotations

import threading
import time

import redis

from core.errors import ServiceUnavailable


class SeenEvents:
    def __init__(
        self, redis_url: str | None, ttl_s: int = 3600, prefix: str = "ragkb:seen:"
    ) -> None:
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._redis = (
            redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            if redis_url
            else None
        )
        self._lock = threading.Lock()
        self._memory: dict[str, float] = {}

    def first_time(self, event_id: str) -> bool:
        """True exactly once per id within the TTL."""
        if self._redis is not None:
            try:
                return bool(self._redis.set(self._prefix + event_id, b"1", nx=True, ex=self._ttl_s))
            except redis.RedisError as exc:
                # Without Redis a redelivery cannot be told from a new event: say so (503,
                # the sender retries) rather than answer twice or fail with a 500.
                raise ServiceUnavailable(
                    "event de-duplication unavailable (Redis): try again shortly",
                    code="dedupe_unavailable",
                ) from exc
        now = time.monotonic()
        with self._lock:
            if len(self._memory) > 10_000:  # keep memory bounded: drop expired ids
                self._memory = {k: exp for k, exp in self._memory.items() if exp > now}
            if self._memory.get(event_id, 0.0) > now:
                return False
            self._memory[event_id] = now + self._ttl_s
            return True
