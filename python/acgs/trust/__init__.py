"""The ``trusted`` document: what the constitution may believe about a caller, built by ACGS
from its own records, never taken from the request (see docs/security.md).

For every evaluation a service asks :meth:`TrustedFacts.document` for the facts of one call
of one kind (``decision``, ``execute``, ``evolution``: the keys of the constitution's
``rate_limits.per_minute``) and hands them to the engine (``decide_json(raw, trusted=...)``,
or :func:`admit` before other evaluations), which drops whatever the client sent under
``trusted`` and puts these in its place:

- ``principal``: ``{"id", "via", "roles"}``: the credential's principal (``via`` ``api_key`` or
  ``jwt``), or the client address (``via`` ``address``) with authentication off;
- ``request_count_1m``: calls of this kind by this principal in the current rate window, this
  one included (fixed windows of ``window_seconds``; in Redis when configured, so every node
  counts one total, else in process). Every call is counted; the count is *reported* once it
  passes the limit the constitution declares for the kind (``rate_limits.per_minute``), which
  is where its rate rules look: at or under the limit the member is absent, which the
  constitution reads as "within the limit". So equal requests of one caller stay equal
  inputs, and the L1 and L2 caches keep answering them. A kind without a declared limit has
  no rate rule to read a count: none is reported;
- ``agent``: with authentication on, the principal's agent-registry record (``trust_level``,
  ``tier``, ``owner``, ``attributes``, ...); a principal the registry does not know, or has
  disabled, gets ``{"trust_level": 0}``: it is trusted with nothing. With authentication off
  there is no ``agent``: claims stand, as in the operator's single-user mode;
- ``session``: only in the policy service's tool decisions (``acgs/tools/decision``),
  ``{"id", "history"}``: the earlier calls of the session the request names, from the
  service's own record (:mod:`acgs.trust.sessions`), never the history the request sends.
  The routes append it (:func:`with_member`) to the document built here.

The constitution combines these with the request's claims (``lib.believed_trust``: a claim
only lowers the registered trust level).
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from acgs._acgs import admit_input
from acgs.security.principal import Principal, principal_of

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from acgs.registry.cache import CachedRegistry
    from acgs.registry.settings import RegistrySettings

__all__ = [
    "UNREGISTERED",
    "Counters",
    "LocalCounters",
    "RedisCounters",
    "TrustedFacts",
    "admit",
    "facts_for",
    "open_facts",
    "owner_key",
    "owner_of",
    "with_member",
]

log = logging.getLogger("acgs.trust")

#: The record of a principal the registry does not know (or has disabled), with auth on.
UNREGISTERED: Final = b'{"trust_level":0}'
#: Counter windows kept in process; past this, windows other than the current one are dropped.
MAX_LOCAL_COUNTERS: Final = 200_000


def admit(raw: bytes, trusted: bytes | None) -> bytes:
    """``raw`` (JSON) with its ``trusted`` member replaced by ``trusted`` (or dropped), numbers
    untouched; the Rust core's admission step (``InvalidInputError`` for unreadable JSON)."""
    return admit_input(raw, trusted)


def owner_key(principal: Principal | None, address: str | None) -> str:
    """The key a caller's usage is counted under, and its sessions kept under
    (acgs.trust.sessions): the principal's ``bucket``, else (authentication off)
    ``address:<client address>``."""
    if principal is not None:
        return principal.bucket
    return f"address:{address or 'unknown'}"


def owner_of(scope: MutableMapping[str, Any]) -> str:
    """:func:`owner_key` of the caller of an ASGI request."""
    client = scope.get("client")
    return owner_key(principal_of(scope), client[0] if client else None)


def with_member(document: bytes, name: str, value: bytes) -> bytes:
    """A ``trusted`` document (a JSON object's bytes, as :meth:`TrustedFacts.documents` builds
    them, or ``{}``) with the member ``name`` (a plain key, not escaped) set to ``value`` (JSON
    bytes) appended, without parsing it again. The document must not hold ``name``."""
    member = b'"' + name.encode() + b'":' + value
    body = document.rstrip()[:-1].rstrip()
    return body + (member if body == b"{" else b"," + member) + b"}"


class Counters(Protocol):
    async def hit(self, key: str, window_seconds: int) -> int:
        """Counts one call under ``key`` in the current window; returns the window's count."""
        ...

    async def close(self) -> None: ...


class LocalCounters:
    """Fixed-window counters in a dict, for one process."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key: str, window_seconds: int) -> int:
        return self.hit_now(key, window_seconds)

    def hit_now(self, key: str, window_seconds: int) -> int:
        window = int(time.time() // window_seconds)
        slot = (key, window)
        n = self._counts.get(slot, 0) + 1
        if n == 1 and len(self._counts) >= MAX_LOCAL_COUNTERS:
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
        self._counts[slot] = n
        return n

    async def close(self) -> None:
        self._counts.clear()


class RedisCounters:
    """Fixed-window counters shared through Redis (``INCR`` + ``EXPIRE`` in one pipeline), so
    every node counts one total. If Redis fails, counting falls back to this process for
    ``retry_after`` seconds (logged): the count then covers this node only, never zero."""

    def __init__(self, redis: Redis, *, prefix: str = "acgs:count:", retry_after: float = 1.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._local = LocalCounters()
        self._retry_after = retry_after
        self._down_until = 0.0
        self.errors = 0

    async def hit(self, key: str, window_seconds: int) -> int:
        now = time.monotonic()
        if now < self._down_until:
            return self._local.hit_now(key, window_seconds)
        window = int(time.time() // window_seconds)
        name = f"{self._prefix}{key}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, 2 * window_seconds)
                count, _ = await pipe.execute()
            return int(count)
        except Exception as exc:  # any Redis or connection fault: count locally, never fail open
            self.errors += 1
            if self._down_until == 0.0 or now >= self._down_until:
                log.warning("usage counters: Redis failed (%s); counting in process for %ss", exc, self._retry_after)
            self._down_until = now + self._retry_after
            return self._local.hit_now(key, window_seconds)

    async def close(self) -> None:
        await self._redis.aclose()


class TrustedFacts:
    """Builds the ``trusted`` document of each evaluation (see the module's docstring)."""

    def __init__(
        self,
        *,
        counters: Counters | None = None,
        registry: CachedRegistry | None = None,
        window_seconds: int = 60,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.counters: Counters = counters if counters is not None else LocalCounters()
        self.registry = registry
        self.window_seconds = max(1, int(window_seconds))
        #: The constitution's per-kind limits: counts at or under them are not reported.
        self.limits = dict(limits or {})

    @classmethod
    def for_constitution(
        cls, data: object, *, counters: Counters | None = None, registry: CachedRegistry | None = None
    ) -> TrustedFacts:
        """Facts counted in the rate window the loaded constitution declares
        (``acgs.constitution.rate_limits.window_seconds``; 60 s when it declares none)."""
        window = 60
        limits: dict[str, int] = {}
        try:
            rates = data["acgs"]["constitution"]["rate_limits"]  # type: ignore[index]
        except (KeyError, TypeError):
            rates = {}
        if type(rates) is dict:
            declared = rates.get("window_seconds")
            if type(declared) is int and declared > 0:
                window = declared
            per_minute = rates.get("per_minute")
            if type(per_minute) is dict:
                limits = {k: v for k, v in per_minute.items() if type(v) is int and v >= 0}
        return cls(counters=counters, registry=registry, window_seconds=window, limits=limits)

    async def for_request(self, kind: str, scope: MutableMapping[str, Any], n: int = 1) -> list[bytes]:
        """The documents of ``n`` calls of ``kind`` by the caller of an ASGI request: its
        authenticated principal, else (authentication off) its client address."""
        client = scope.get("client")
        return await self.documents(kind, principal_of(scope), client[0] if client else None, n)

    async def document(self, kind: str, principal: Principal | None, address: str | None) -> bytes:
        """The ``trusted`` document (JSON bytes) for one call of ``kind``."""
        return (await self.documents(kind, principal, address, 1))[0]

    async def documents(self, kind: str, principal: Principal | None, address: str | None, n: int) -> list[bytes]:
        """The documents of ``n`` calls of ``kind`` made at once (a batch): each call counts."""
        if principal is not None:
            ident = {"id": principal.subject, "via": principal.via, "roles": sorted(principal.roles)}
        else:
            ident = {"id": address or "unknown", "via": "address", "roles": []}
        key = f"{kind}:{owner_key(principal, address)}"
        head = b'{"principal":' + orjson.dumps(ident)
        tail = b"}"
        if principal is not None:
            tail = b',"agent":' + self._record(principal) + b"}"
        limit = self.limits.get(kind)
        out = []
        for _ in range(max(1, n)):
            count = await self.counters.hit(key, self.window_seconds)
            if limit is not None and count > limit:
                out.append(head + b',"request_count_1m":' + str(count).encode() + tail)
            else:
                out.append(head + tail)
        return out

    def _record(self, principal: Principal) -> bytes:
        if self.registry is None:
            return UNREGISTERED
        try:
            text = self.registry.facts_json(principal.subject)
        except Exception as exc:  # registry not loaded yet, or failing: trusted with nothing
            log.warning("agent registry unavailable (%s): %s is trusted with nothing", exc, principal.subject)
            return UNREGISTERED
        return text.encode() if text is not None else UNREGISTERED

    async def start(self) -> None:
        """Loads the registry and keeps it fresh. Unreadable now, every principal is trusted
        with nothing until a reload succeeds."""
        if self.registry is not None:
            try:
                await self.registry.start()
            except Exception as exc:
                log.warning("agent registry cannot be read yet (%s): principals are trusted with nothing", exc)

    async def close(self) -> None:
        await self.counters.close()
        if self.registry is not None:
            await self.registry.close()


def facts_for(
    data: object, *, auth: bool, redis_url: str | None = None, registry_settings: RegistrySettings | None = None
) -> TrustedFacts:
    """The facts of a service on the loaded constitution ``data`` (``start`` it in the
    service's lifespan): with authentication on, the agent registry (``ACGS_AGENT_REGISTRY``,
    SQLite under the data directory by default) is consulted for every principal; counters live
    in Redis when ``redis_url`` is given, in process otherwise."""
    registry = None
    if auth:
        from acgs.registry import CachedRegistry, RegistrySettings, open_registry

        settings = registry_settings if registry_settings is not None else RegistrySettings.from_env()
        registry = CachedRegistry(open_registry(settings.resolved_url()), settings.refresh)
    counters: Counters
    if redis_url:
        from redis.asyncio import Redis

        counters = RedisCounters(Redis.from_url(redis_url, socket_timeout=0.05, socket_connect_timeout=0.05))
    else:
        counters = LocalCounters()
    return TrustedFacts.for_constitution(data, counters=counters, registry=registry)


async def open_facts(
    data: object, *, auth: bool, redis_url: str | None = None, registry_settings: RegistrySettings | None = None
) -> TrustedFacts:
    """:func:`facts_for`, started."""
    facts = facts_for(data, auth=auth, redis_url=redis_url, registry_settings=registry_settings)
    await facts.start()
    return facts
