"""JWT bearer tokens (PyJWT): HS256 with a shared secret and/or RS256 with a public key, with
issuer and audience checks and roles read from a configurable claim.

Verified tokens are remembered until they expire, so a client reusing its token costs a dict
lookup rather than a signature check per request."""

from __future__ import annotations

import time
from typing import Any

import jwt

from acgs.security.principal import ROLES, Principal
from acgs.security.settings import SecuritySettings

#: Verified tokens kept; past this the memo is emptied (tokens are re-verified, nothing else).
MEMO_SIZE = 10_000


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

    def __init__(self, settings: SecuritySettings) -> None:
        self._keys: dict[str, Any] = {}
        if "HS256" in settings.jwt_algorithms:
            self._keys["HS256"] = settings.hs256_key()
        if "RS256" in settings.jwt_algorithms and settings.jwt_public_key_file is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self._keys["RS256"] = load_pem_public_key(settings.jwt_public_key_file.read_bytes())
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._roles_claim = settings.jwt_roles_claim
        self._leeway = settings.jwt_leeway
        self._memo: dict[str, tuple[Principal, float]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def verify(self, token: str) -> Principal:
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
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
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
