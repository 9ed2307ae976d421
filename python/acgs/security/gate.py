"""The gate every request passes before a service handles it: who is calling (API key or JWT),
whether the route accepts one of its roles, and whether its token bucket has a token.

It works on the raw ASGI scope, so the policy service's decision path can call it without
Starlette's request objects. An API key costs a SHA-256 and a dict lookup (keys are held in
memory and reloaded from the store every ``key_refresh`` seconds, in the background); a JWT is
verified once and then remembered until it expires."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acgs.security.access import Access
from acgs.security.keys import ApiKey, KeyStore, hash_token, looks_like_key, open_key_store
from acgs.security.limits import RateLimiter, retry_after_header
from acgs.security.principal import SCOPE_KEY, Principal
from acgs.security.settings import SecuritySettings
from acgs.security.tokens import JwtVerifier, TokenRejected

log = logging.getLogger("acgs.security")

#: Set in the scope once a request passed the gate, so a second gate in the stack lets it by.
ADMITTED = "acgs.admitted"


@dataclass(frozen=True, slots=True)
class ErrorStyle:
    """The top-level ``code`` each refusal carries in a service's error body
    (``{"code", "message", "errors": [{"code", "message"}]}``); ``errors[0].code`` is the same
    specific reason on every service."""

    unauthenticated: str
    forbidden: str = "forbidden"
    #: A malformed request (a foreign Host, a body that is not JSON).
    invalid: str = "invalid_request"
    rate_limited: str = "rate_limited"
    unavailable: str = "unavailable"


#: OPA's code for a refused credential (policy and audit services).
OPA_ERRORS = ErrorStyle(unauthenticated="unauthorized", invalid="invalid_parameter")
#: ACGS's own services (evolution, sandbox).
ACGS_ERRORS = ErrorStyle(unauthenticated="unauthenticated")


class Sessions(Protocol):
    """Signed-in people (``acgs.security.oidc.OidcSignIn``): a session cookie stands for its user
    on the pages under ``paths`` when the request carries no credentials of its own."""

    paths: tuple[str, ...]

    def principal(self, scope: MutableMapping[str, Any]) -> Principal | None: ...

    def sign_in_location(self, scope: MutableMapping[str, Any]) -> str: ...


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal, ready to send."""

    status: int
    body: bytes
    headers: dict[str, str]

    async def send(self, send: Any) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()),
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class SecurityMetrics(Collector):
    """``acgs_auth_requests_total{outcome}`` and the limiter's Redis failures."""

    OUTCOMES = ("admitted", "public", "unauthenticated", "forbidden", "rate_limited", "unavailable")

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "acgs_auth_requests", "Requests seen by the security gate, by outcome", labels=["service", "outcome"]
        )
        for outcome in self.OUTCOMES:
            requests.add_metric([self.gate.access.service, outcome], self.gate.counts[outcome])
        yield requests
        yield CounterMetricFamily(
            "acgs_rate_limit_redis_errors",
            "Rate-limit checks Redis failed to answer (the node's own buckets decided)",
            value=self.gate.limiter.redis_errors,
        )
        yield GaugeMetricFamily(
            "acgs_auth_api_keys", "Active API keys held in memory", value=len(self.gate.keys or {})
        )


def _body(code: str, reason: str, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message, "errors": [{"code": reason, "message": message}]})


class Gate:
    """Authentication, role check and rate limit for one service."""

    def __init__(
        self,
        settings: SecuritySettings,
        access: Access,
        *,
        style: ErrorStyle = ACGS_ERRORS,
        store: KeyStore | None = None,
    ) -> None:
        self.settings = settings
        self.access = access.with_public_metrics() if settings.public_metrics else access
        self.style = style
        self.auth = settings.auth
        self.store = store if store is not None else (open_key_store(settings.resolved_key_store()) if settings.auth else None)
        self.jwt = JwtVerifier(settings) if settings.auth and settings.jwt_algorithms else None
        self.limiter = RateLimiter(
            settings.redis_url, timeout_ms=settings.redis_timeout_ms, retry_after=settings.redis_retry_after
        )
        self.limited = settings.rate_limit > 0 or bool(settings.rate_limit_roles)
        #: Active keys by hash; None until first loaded.
        self.keys: dict[str, ApiKey] | None = None
        #: The principal of each active key, by hash (built with ``keys``).
        self._principals: dict[str, Principal] = {}
        self._next_refresh = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        #: (rate, burst) by a principal's roles.
        self._limits: dict[frozenset[str], tuple[float, float]] = {}
        self.counts: dict[str, int] = dict.fromkeys(SecurityMetrics.OUTCOMES, 0)
        self.metrics = SecurityMetrics(self)
        #: Single sign-on sessions, when the service has them (set by the service's app).
        self.sessions: Sessions | None = None

    # -- keys ---------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reloads the active keys from the store now. On failure the keys already held stay
        in force (a store outage must not lock every client out) and the next request retries."""
        if self.store is None:
            return
        try:
            keys = await self.store.active()
            self._principals = {h: Principal(k.name, k.roles, "api_key", k.id) for h, k in keys.items()}
            self.keys = keys
            self._next_refresh = time.monotonic() + self.settings.key_refresh
        except Exception as exc:
            log.error("security: cannot load API keys (%s: %s); keeping %d known key(s)", type(exc).__name__, exc, len(self.keys or {}))
            self._next_refresh = time.monotonic() + min(1.0, self.settings.key_refresh)

    def _keys_ready(self) -> bool:
        """Whether the keys in memory may answer now; schedules a background reload when due.
        False: the caller must await ``refresh`` first (nothing loaded yet, or refresh 0)."""
        if self.keys is None or self.settings.key_refresh == 0:
            return False
        if time.monotonic() >= self._next_refresh and (self._refreshing is None or self._refreshing.done()):
            self._next_refresh = time.monotonic() + self.settings.key_refresh
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh(), name="acgs-security-keys")
        return True

    # -- the gate -----------------------------------------------------------------------------

    async def admit(self, scope: MutableMapping[str, Any]) -> Denial | None:
        """None if the request may go on (its principal is then in ``scope``), else the
        refusal to send."""
        if scope.get(ADMITTED):
            return None
        path: str = scope["path"]
        rule = self.access.rule_for(scope["method"], path)
        if rule.public:
            self.counts["public"] += 1
            scope[ADMITTED] = True
            return None
        if self.auth:
            outcome = self._authenticate(scope, path)
            if outcome is None:
                await self.refresh()
                outcome = self._authenticate(scope, path, loaded=True)
            if outcome is None or isinstance(outcome, Denial):
                return outcome or self._unavailable()
            principal = outcome
            if not principal.accepted(rule.accepted):
                self.counts["forbidden"] += 1
                wants = ", ".join(sorted(rule.accepted))
                has = ", ".join(sorted(principal.roles)) or "none"
                message = f"{principal.subject} may not call {scope['method']} {path}: it needs one of the roles {wants} (has {has})"
                return Denial(403, _body(self.style.forbidden, "role_not_allowed", message), {})
            scope[SCOPE_KEY] = principal
        else:
            client = scope.get("client")
            principal = Principal(client[0] if client else "unknown", frozenset(), "address")
        if self.limited:
            limit = self._limits.get(principal.roles)
            if limit is None:
                limit = self._limits[principal.roles] = self.settings.limit_for(principal.roles)
            rate, burst = limit
            if rate > 0:
                if self.limiter.shared:
                    wait = await self.limiter.take(principal.bucket, rate, burst)
                else:
                    wait = self.limiter.local.take(principal.bucket, rate, burst)
                if wait > 0:
                    self.counts["rate_limited"] += 1
                    message = f"rate limit of {rate:g} requests/s (burst {burst:g}) exceeded for {principal.subject}; retry in {wait:.2f}s"
                    return Denial(429, _body(self.style.rate_limited, "rate_limited", message), {"Retry-After": retry_after_header(wait)})
        self.counts["admitted"] += 1
        scope[ADMITTED] = True
        return None

    def _unavailable(self) -> Denial:
        self.counts["unavailable"] += 1
        message = "the API key store cannot be read; try again shortly"
        return Denial(503, _body(self.style.unavailable, "key_store_unavailable", message), {"Retry-After": "1"})

    def _unauthenticated(self, path: str, reason: str, message: str) -> Denial:
        self.counts["unauthenticated"] += 1
        challenge = 'Bearer realm="acgs"'
        if reason != "missing_credentials":
            # RFC 6750's error attributes; the description is a quoted-string.
            description = message.replace("\\", "/").replace('"', "'")
            challenge += f', error="invalid_token", error_description="{description}"'
        if self.access.is_browser_page(path):
            challenge += ', Basic realm="acgs"'
        return Denial(401, _body(self.style.unauthenticated, reason, message), {"WWW-Authenticate": challenge})

    def _authenticate(self, scope: MutableMapping[str, Any], path: str, *, loaded: bool = False) -> Principal | Denial | None:
        """The caller's principal, or the refusal; None when an API key was sent and the keys
        must be (re)loaded first. Synchronous, so the common case costs no coroutine."""
        token = _credential(scope)
        if not token and self.sessions is not None and path.startswith(self.sessions.paths):
            return self._session(scope, path)
        if not token:
            return self._unauthenticated(
                path, "missing_credentials", "credentials required: send Authorization: Bearer <API key or JWT>"
            )
        if looks_like_key(token):
            if not loaded and not self._keys_ready():
                return None
            if self.keys is None:
                return self._unavailable()
            principal = self._principals.get(hash_token(token))
            if principal is None:
                return self._unauthenticated(path, "invalid_api_key", "unknown or revoked API key")
            return principal
        if self.jwt is None:
            return self._unauthenticated(path, "invalid_token", "not an ACGS API key, and JWTs are not accepted here")
        try:
            return self.jwt.verify(token)
        except TokenRejected as exc:
            return self._unauthenticated(path, exc.reason, exc.message)

    def _session(self, scope: MutableMapping[str, Any], path: str) -> Principal | Denial:
        """The signed-in person of a browser page; without a valid session, a page read is sent
        to sign in (303) and anything else is a 401."""
        assert self.sessions is not None
        principal = self.sessions.principal(scope)
        if principal is not None:
            return principal
        self.counts["unauthenticated"] += 1
        location = self.sessions.sign_in_location(scope)
        message = f"sign in first: {location.partition('?')[0]} (or send Authorization: Bearer <API key or JWT>)"
        body = _body(self.style.unauthenticated, "sign_in_required", message)
        if scope["method"] in ("GET", "HEAD"):
            return Denial(303, body, {"Location": location, "Cache-Control": "no-store"})
        return Denial(401, body, {"WWW-Authenticate": 'Bearer realm="acgs"'})

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
        await self.limiter.close()


def _credential(scope: MutableMapping[str, Any]) -> str | None:
    """The token from ``Authorization: Bearer``, ``X-API-Key``, or ``Authorization: Basic``
    (any user name, the API key as password: what a browser sends for the review page)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme = value[:7].lower()
            if scheme == b"bearer ":
                return value[7:].strip().decode("latin-1") or None
            if scheme[:6] == b"basic ":
                try:
                    decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return None
                return decoded.partition(":")[2] or None
            return None
        if name == b"x-api-key":
            return value.strip().decode("latin-1") or None
    return None
