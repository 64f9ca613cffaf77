"""Per-tenant and per-key limits: token buckets for request rate and slots for concurrency.

Two backends with one interface: Redis (production: shared by every API replica, atomic
Lua scripts) and in-process (embedded mode, one process). Keys are always built from a
tenant or key id, so one tenant's traffic never drains another's bucket.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from core.errors import RateLimited, ServiceUnavailable


@dataclass(frozen=True, slots=True)
class Bucket:
    """``rate`` tokens per second refill a bucket that holds at most ``burst`` tokens."""

    rate: float
    burst: int


class Limiter(Protocol):
    def take(self, key: str, bucket: Bucket) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        ...

    def acquire_slot(self, key: str, limit: int, ttl_s: int) -> str | None:
        """Hold one of ``limit`` concurrent slots; a token to release it, or None if full."""
        ...

    def release_slot(self, key: str, token: str) -> None: ...

    def health(self) -> dict[str, str]:
        """For /readyz: raises when the backend is unreachable."""
        ...


class MemoryLimiter:
    """In-process limiter for the embedded mode (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._slots: dict[str, dict[str, float]] = {}

    def take(self, key: str, bucket: Bucket) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, updated = self._buckets.get(key, (float(bucket.burst), now))
            tokens = min(float(bucket.burst), tokens + (now - updated) * bucket.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / bucket.rate

    def acquire_slot(self, key: str, limit: int, ttl_s: int) -> str | None:
        now = time.monotonic()
        with self._lock:
            held = {t: exp for t, exp in self._slots.get(key, {}).items() if exp > now}
            if len(held) >= limit:
                self._slots[key] = held
                return None
            token = uuid.uuid4().hex
            held[token] = now + ttl_s
            self._slots[key] = held
            return token

    def release_slot(self, key: str, token: str) -> None:
        with self._lock:
            self._slots.get(key, {}).pop(token, None)

    def health(self) -> dict[str, str]:
        return {"backend": "in-process"}


# Refill and take atomically: KEYS[1] bucket; ARGV rate, burst, now (s). Returns wait in ms.
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return wait
"""

# Concurrency slots as a sorted set of (token, expiry): expired holders (a crashed replica)
# free their slot by themselves. KEYS[1] set; ARGV limit, now, expiry, token.
_SLOT_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[2])) + 60)
return 1
"""


class RedisLimiter:
    """Limiter shared by all API replicas through Redis."""

    def __init__(self, url: str, prefix: str = "ragkb:rl:") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._take = self._redis.register_script(_TAKE_LUA)
        self._slot = self._redis.register_script(_SLOT_LUA)

    def take(self, key: str, bucket: Bucket) -> float:
        args = [bucket.rate, bucket.burst, time.time()]
        return self._call(self._take, [self._prefix + key], args) / 1000.0

    def acquire_slot(self, key: str, limit: int, ttl_s: int) -> str | None:
        token = uuid.uuid4().hex
        now = time.time()
        granted = self._call(self._slot, [self._prefix + key], [limit, now, now + ttl_s, token])
        return token if int(granted) == 1 else None

    def release_slot(self, key: str, token: str) -> None:
        with suppress(redis.RedisError):  # if Redis is gone, the slot expires by itself
            self._redis.zrem(self._prefix + key, token)

    def health(self) -> dict[str, str]:
        self._redis.ping()
        return {"backend": "redis"}

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except redis.RedisError as exc:
            raise ServiceUnavailable(
                "rate limiter unavailable (Redis): try again shortly", code="limiter_unavailable"
            ) from exc


class RecentRefusals:
    """Credentials this process has just refused for their rate, until the limiter's own
    retry time (capped at ``max_s``).

    Refusing must cost far less than answering: a client that keeps sending past its limit
    would otherwise cost the server a database lookup, two limiter calls and several worker
    threads per refusal, and one tenant's flood of 429s would slow every other tenant (issue
    #8, ``bench/noisy_neighbour.py``). The request-context middleware refuses a remembered
    credential at the door instead. Keyed by a hash of the presented credential, so only that
    same key is refused; a request the shared limiter would already accept again (a raised
    limit, another replica's view) is refused for at most ``max_s``. ``max_s`` 0: off.
    """

    def __init__(self, max_s: float, max_entries: int = 100_000) -> None:
        self.max_s = max_s
        self.max_entries = max_entries
        self._until: dict[bytes, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(credential: str) -> bytes:
        return hashlib.sha256(credential.encode("utf-8", "surrogateescape")).digest()

    def remember(self, credential: str, refused: RateLimited) -> None:
        if self.max_s <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._until) >= self.max_entries:
                self._until = {k: v for k, v in self._until.items() if v[0] > now}
                if len(self._until) >= self.max_entries:
                    return
            until = now + min(refused.retry_after, self.max_s)
            self._until[self._key(credential)] = (until, refused.message)

    def check(self, credential: str) -> tuple[float, str] | None:
        """(seconds left, the refusal's message) while ``credential`` is refused, else None."""
        if self.max_s <= 0 or not self._until:
            return None
        key = self._key(credential)
        now = time.monotonic()
        with self._lock:
            entry = self._until.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._until[key]
                return None
        return entry[0] - now, entry[1]


def enforce_rate(limiter: Limiter, key: str, bucket: Bucket, what: str) -> None:
    """Raise 429 (with Retry-After) when ``key`` has no token left."""
    wait = limiter.take(key, bucket)
    if wait > 0:
        raise RateLimited(f"too many requests for this {what}; retry later", retry_after=wait)


@contextmanager
def concurrency_slot(
    limiter: Limiter, key: str, limit: int, ttl_s: int, what: str
) -> Iterator[None]:
    """Hold one of ``limit`` concurrent slots for the duration of the block, or raise 429."""
    token = limiter.acquire_slot(key, limit, ttl_s)
    if token is None:
        raise RateLimited(f"too many concurrent {what}; retry shortly", retry_after=1.0)
    try:
        yield
    finally:
        limiter.release_slot(key, token)
