"""Token buckets per principal: in process by default, shared through Redis (one atomic Lua
script per request) when Redis is configured, so several nodes enforce one limit.

If Redis fails, the limiter falls back to its in-process buckets for ``retry_after`` seconds
(logged once, counted in ``redis_errors``): limits then hold per node instead of across nodes.
Only the limiter degrades; authentication and the policy decision never depend on Redis."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("acgs.security.limits")

#: Buckets kept in process; past this, full (idle) buckets are dropped.
MAX_LOCAL_BUCKETS = 100_000


class LocalBuckets:
    """Token buckets in a dict: ``bucket -> [tokens, last refill]``."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}

    def take(self, bucket: str, rate: float, burst: float) -> float:
        """0 if a token was taken, else the seconds until one will be there."""
        now = time.monotonic()
        state = self._buckets.get(bucket)
        if state is None:
            if len(self._buckets) >= MAX_LOCAL_BUCKETS:
                self._evict(now, rate, burst)
            self._buckets[bucket] = [burst - 1.0, now]
            return 0.0
        tokens = min(burst, state[0] + (now - state[1]) * rate)
        state[1] = now
        if tokens >= 1.0:
            state[0] = tokens - 1.0
            return 0.0
        state[0] = tokens
        return (1.0 - tokens) / rate

    def _evict(self, now: float, rate: float, burst: float) -> None:
        full = [b for b, (tokens, last) in self._buckets.items() if tokens + (now - last) * rate >= burst]
        for bucket in full:
            del self._buckets[bucket]
        if len(self._buckets) >= MAX_LOCAL_BUCKETS:
            self._buckets.clear()


# Redis's own clock (TIME) so nodes with skewed clocks share one notion of "now". Numbers go
# back as strings: Redis would truncate a Lua number to an integer.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RateLimiter:
    """``await take(bucket, rate, burst)``: 0 if the request may go on, else the seconds to
    wait (the ``Retry-After``)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        timeout_ms: float = 50.0,
        retry_after: float = 1.0,
        prefix: str = "acgs:rl:",
    ) -> None:
        self.local = LocalBuckets()
        self.redis_errors = 0
        self._prefix = prefix
        self._timeout = timeout_ms / 1000.0
        self._retry_after = retry_after
        self._down_until = 0.0
        self._redis: Redis | None = None
        if redis_url:
            # No client retries: a retry would spend a second deadline on the request.
            self._redis = Redis.from_url(
                redis_url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            self._script = self._redis.register_script(_TAKE)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def take(self, bucket: str, rate: float, burst: float) -> float:
        if self._redis is None or time.monotonic() < self._down_until:
            return self.local.take(bucket, rate, burst)
        try:
            async with asyncio.timeout(self._timeout):
                wait = await self._script(keys=[self._prefix + bucket], args=[repr(rate), repr(burst)])
            return float(wait)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            self.redis_errors += 1
            if time.monotonic() >= self._down_until:
                log.warning(
                    "rate limiter: Redis failed (%s: %s); buckets kept per node for %.1fs",
                    type(exc).__name__, exc, self._retry_after,
                )  # fmt: skip
            self._down_until = time.monotonic() + self._retry_after
            return self.local.take(bucket, rate, burst)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def retry_after_header(wait: float) -> str:
    """Whole seconds, rounded up, at least 1 (``Retry-After`` takes no fractions)."""
    return str(max(1, math.ceil(wait)))
