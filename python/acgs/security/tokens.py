"""JWT bearer tokens (PyJWT): HS256 with a shared secret and/or RS256 with a public key, with
issuer and audience checks and roles read from a configurable claim.

Verified tokens are remembered until they expire, so a client reusing its token costs a dict
lookup rather than a signature check per request.

The keys may live in a secrets store (``acgs.security.secrets``: ``ACGS_JWT_HS256_KEY`` and
``ACGS_JWT_PUBLIC_KEY_FILE`` may be ``file:``, ``env:`` or ``vault:`` references; a key file is
a ``file:`` reference). They are read again every ``ACGS_SECRETS_TTL`` seconds, and at once
(at most once a second) when a token's signature does not match, so a rotated key verifies new
tokens without a restart; tokens remembered under a replaced key are forgotten. A key that
cannot be read refuses every token it would verify (fail closed)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jwt

from acgs.security.principal import ROLES, Principal
from acgs.security.secrets import SecretError, SecretInvalid, SecretResolver, default_resolver, is_reference
from acgs.security.settings import SecuritySettings

log = logging.getLogger("acgs.security")

#: Verified tokens kept; past this the memo is emptied (tokens are re-verified, nothing else).
MEMO_SIZE = 10_000
#: Least seconds between two reads of the keys forced by tokens whose signature does not match
#: (a flood of forged tokens costs the secrets store at most one read a second).
FORCED_REFRESH_INTERVAL = 1.0


class TokenRejected(Exception):
    """The token is not acceptable; ``reason`` is a short code (``expired_token``,
    ``invalid_token``), ``message`` says why in words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def roles_from_claims(claims: dict[str, Any], claim: str) -> frozenset[str]:
    """The ACGS roles named by ``claim`` (dots walk into objects); other values are ignored."""
    value: Any = claims
    for part in claim.split("."):
        if not isinstance(value, dict):
            return frozenset()
        value = value.get(part)
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, list):
        items = [v for v in value if isinstance(v, str)]
    else:
        return frozenset()
    return frozenset(r.lower() for r in items if r.lower() in ROLES)


class JwtVerifier:
    """Verifies tokens signed with the configured algorithms. The signing key is chosen by the
    token's ``alg`` among the configured ones only, so an RS256 public key can never be used
    as an HS256 secret."""

    def __init__(
        self, settings: SecuritySettings, *, secrets: SecretResolver | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._secrets = secrets
        self._clock = clock
        #: Where each algorithm's key comes from: a reference (or, for HS256, the key itself).
        self._sources: dict[str, str] = {}
        if "HS256" in settings.jwt_algorithms:
            if settings.jwt_hs256_key_file is not None:
                self._sources["HS256"] = _file_reference(settings.jwt_hs256_key_file)
            else:
                self._sources["HS256"] = settings.jwt_hs256_key or ""
        if "RS256" in settings.jwt_algorithms and settings.jwt_public_key_file is not None:
            self._sources["RS256"] = _file_reference(settings.jwt_public_key_file)
        self._keys: dict[str, Any] = {}
        self._texts: dict[str, str] = {}
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._roles_claim = settings.jwt_roles_claim
        self._leeway = settings.jwt_leeway
        self._memo: dict[str, tuple[Principal, float]] = {}
        self._fault: str | None = None
        self._forced_at = -FORCED_REFRESH_INTERVAL
        self._ttl = self._resolver.settings.ttl
        # Fail closed at start: a service whose JWT key cannot be read does not start.
        self._load(fresh=True)

    @property
    def _resolver(self) -> SecretResolver:
        return self._secrets or default_resolver()

    def _load(self, *, fresh: bool = False) -> bool:
        """Reads every key (from the resolver's cache unless ``fresh``); whether one changed.
        Raises ``SecretError`` when a key cannot be read or is not a key."""
        changed = False
        for alg, source in self._sources.items():
            text = self._resolver.resolve(source, fresh=fresh) if source else ""
            if text == self._texts.get(alg):
                continue
            self._keys[alg] = _key_object(alg, source, text)
            self._texts[alg] = text
            changed = True
        self._checked_at = self._clock()
        if changed:
            self._memo.clear()  # tokens verified under a replaced key are checked again
        return changed

    def _refresh(self, *, fresh: bool = False) -> bool:
        """``_load`` for a request: a fault is remembered (every token is refused until the keys
        can be read again) and logged with the reference, never shown to the client."""
        try:
            changed = self._load(fresh=fresh)
        except SecretError as exc:
            if self._fault != str(exc):
                log.error("JWT keys cannot be read, tokens are refused: %s", exc)
            self._fault = str(exc)
            self._memo.clear()
            return False
        self._fault = None
        return changed

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def verify(self, token: str) -> Principal:
        if self._clock() - self._checked_at >= self._ttl:
            self._refresh()
        if self._fault is not None:
            raise TokenRejected("key_unavailable", "the token cannot be verified: its key is unavailable")
        memo = self._memo.get(token)
        if memo is not None:
            if time.time() < memo[1] + self._leeway:
                return memo[0]
            del self._memo[token]
            raise TokenRejected("expired_token", "the token has expired")
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("invalid_token", f"malformed token: {exc}") from None
        key = self._keys.get(alg) if isinstance(alg, str) else None
        if key is None or not isinstance(alg, str):
            raise TokenRejected("invalid_token", f"token algorithm {alg!r} is not accepted (accepted: {', '.join(self._keys)})")
        try:
            try:
                claims = self._decode(token, key, alg)
            except jwt.InvalidSignatureError:
                # Perhaps signed with a key rotated since the last read: read once more.
                now = self._clock()
                if now - self._forced_at < FORCED_REFRESH_INTERVAL:
                    raise
                self._forced_at = now
                if not self._refresh(fresh=True) or alg not in self._keys:
                    raise
                claims = self._decode(token, self._keys[alg], alg)
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired_token", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("invalid_token", f"the token's audience is not {self._audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("invalid_token", f"the token's issuer is not {self._issuer!r}") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRejected("invalid_token", f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("invalid_token", "the token's sub claim must be a non-empty string")
        principal = Principal(subject, roles_from_claims(claims, self._roles_claim), "jwt")
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[token] = (principal, float(claims["exp"]))
        return principal

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
            options={"require": ["exp", "sub"]},
        )
        return claims


def _file_reference(path: os.PathLike[str] | str) -> str:
    """A key file setting as a reference: ``file:`` of its absolute path (symbolic links are
    followed at each read, so a swapped Kubernetes secret mount is seen), unless the setting is a
    reference itself (``vault:...``)."""
    text = str(path)
    return text if is_reference(text) else f"file:{os.path.abspath(text)}"


def _key_object(alg: str, source: str, text: str) -> Any:
    where = source if is_reference(source) else "ACGS_JWT_HS256_KEY"
    if not text:
        raise SecretInvalid(where, "the JWT key is empty")
    if alg == "HS256":
        return text.encode()
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(text.encode())
    except (ValueError, TypeError):
        raise SecretInvalid(where, "not a PEM public key") from None
