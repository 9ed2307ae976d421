"""The L2 decision cache in Redis (redis-py, asyncio): result sets shared by every policy node,
keyed by the engine's cache key, with a TTL.

Redis is an accelerator, never a dependency of a decision: every command has a short deadline,
a failure opens a breaker for ``retry_after`` seconds during which Redis is not asked at all,
so an outage costs one deadline, not one per request."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("acgs.cache.redis")

#: Background writes beyond this many in flight are dropped rather than queued without bound.
MAX_PENDING_WRITES = 1024


class RedisL2:
    """Implements :class:`acgs.cache.L2Cache` on one Redis (or a proxy in front of a cluster)."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        timeout_ms: float = 50.0,
        retry_after: float = 1.0,
        prefix: bytes = b"acgs:l2:",
    ) -> None:
        self._timeout = timeout_ms / 1000.0
        self._ttl_ms = max(1, int(ttl * 1000))
        self._retry_after = retry_after
        self._prefix = prefix
        # No client-side retries: a retry would spend a second deadline on a request that
        # can simply go on without the cache.
        self._client = Redis.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._down_until = 0.0
        self._errors = 0
        self._dropped = 0
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def dropped_writes(self) -> int:
        return self._dropped

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        self._errors += 1
        was_up = self.available
        self._down_until = time.monotonic() + self._retry_after
        if was_up:
            log.warning("redis L2 %s failed (%s: %s); L1 only for %.1fs", op, type(exc).__name__, exc, self._retry_after)

    async def get(self, key: bytes) -> bytes | None:
        if not self.available:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._client.get(self._prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys or not self.available:
            return [None] * len(keys)
        try:
            async with asyncio.timeout(self._timeout):
                values = await self._client.mget([self._prefix + k for k in keys])
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("mget", exc)
            return [None] * len(keys)
        return [v if isinstance(v, bytes) else None for v in values]

    def put(self, key: bytes, value: bytes) -> None:
        if not self.available:
            return
        if len(self._pending) >= MAX_PENDING_WRITES:
            self._dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._set(self._prefix + key, value))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _set(self, key: bytes, value: bytes) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(key, value, px=self._ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)

    async def flush_writes(self) -> None:
        """Wait for background writes in flight (tests and shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def close(self) -> None:
        await self.flush_writes()
        await self._client.aclose()
