"""Decision caches beyond the engine's own L1: the :class:`L2Cache` protocol that shared caches
(Redis, :mod:`acgs.cache.redis_l2`) implement."""

from __future__ import annotations

from typing import Protocol


class L2Cache(Protocol):
    """A cache shared by policy nodes. It must never fail a decision: ``get`` answers None
    when the backend is down, ``put`` drops the write."""

    @property
    def errors(self) -> int:
        """Backend failures so far (timeouts, refused connections, protocol errors)."""
        ...

    @property
    def available(self) -> bool:
        """False while the backend is considered down (operations are skipped)."""
        ...

    async def get(self, key: bytes) -> bytes | None: ...

    async def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """One round trip for many keys; all None when the backend is down."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Store in the background; the caller does not wait for the backend."""
        ...

    async def close(self) -> None: ...


__all__ = ["L2Cache"]
