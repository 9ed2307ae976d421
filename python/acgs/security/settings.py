"""Settings of identity, roles, rate limits and TLS, shared by the four services: one frozen
object, read from ``ACGS_*`` environment variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acgs.security.principal import ROLES
from acgs.security.secrets import is_reference, resolve, resolve_optional_url, resolve_url
from acgs.services.common.env import read_env

#: Environment variable for each setting. The data directory and Redis are shared by every
#: service, so their names carry no prefix of their own.
ENV_NAMES: dict[str, str] = {
    "auth": "ACGS_AUTH",
    "data_dir": "ACGS_DATA_DIR",
    "key_store": "ACGS_AUTH_KEY_STORE",
    "key_refresh": "ACGS_AUTH_KEY_REFRESH",
    "public_metrics": "ACGS_AUTH_PUBLIC_METRICS",
    "jwt_algorithms": "ACGS_JWT_ALGORITHMS",
    "jwt_hs256_key": "ACGS_JWT_HS256_KEY",
    "jwt_hs256_key_file": "ACGS_JWT_HS256_KEY_FILE",
    "jwt_public_key_file": "ACGS_JWT_PUBLIC_KEY_FILE",
    "jwt_issuer": "ACGS_JWT_ISSUER",
    "jwt_audience": "ACGS_JWT_AUDIENCE",
    "jwt_roles_claim": "ACGS_JWT_ROLES_CLAIM",
    "jwt_leeway": "ACGS_JWT_LEEWAY",
    "rate_limit": "ACGS_RATE_LIMIT",
    "rate_burst": "ACGS_RATE_BURST",
    "rate_limit_roles": "ACGS_RATE_LIMIT_ROLES",
    "redis_url": "ACGS_REDIS_URL",
    "redis_timeout_ms": "ACGS_REDIS_TIMEOUT_MS",
    "redis_retry_after": "ACGS_REDIS_RETRY_AFTER",
    "tls_cert_file": "ACGS_TLS_CERT_FILE",
    "tls_key_file": "ACGS_TLS_KEY_FILE",
    "tls_client_ca_file": "ACGS_TLS_CLIENT_CA_FILE",
    "allowed_hosts": "ACGS_ALLOWED_HOSTS",
    "allowed_origins": "ACGS_ALLOWED_ORIGINS",
    "insecure": "ACGS_INSECURE",
}

JWT_ALGORITHMS = ("HS256", "RS256")

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off", ""))


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("use true or false")


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise ValueError("must be a non-negative number")
    return value


def _optional_text(text: str) -> str | None:
    return text or None


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _algorithms(text: str) -> tuple[str, ...]:
    found = tuple(a.strip().upper() for a in text.split(",") if a.strip())
    unknown = [a for a in found if a not in JWT_ALGORITHMS]
    if unknown:
        raise ValueError(f"unsupported JWT algorithm(s) {', '.join(unknown)}; use {' and/or '.join(JWT_ALGORITHMS)}")
    return found


def _hosts(text: str) -> tuple[str, ...]:
    """``acgs.example.com,10.0.0.5:8004,[fd00::1]``: names a client may put in ``Host``; a name
    without a port matches any port. ``*`` accepts any name (then DNS rebinding is the
    operator's to prevent, for example by a proxy that checks the name)."""
    found = tuple(h.strip().lower() for h in text.split(",") if h.strip())
    for host in found:
        if host == "*":
            continue
        name, port = split_host(host)
        if not name or port is None or any(c in name for c in "/@?#* ") or (port and not port.isdigit()):
            raise ValueError(f"{host!r} is not a host name (write name, name:port, or [ipv6]:port)")
        if not host.isascii():
            raise ValueError(f"{host!r}: write the name in its ASCII (punycode) form, as clients send it")
    return found


def _origins(text: str) -> tuple[str, ...]:
    """``https://console.example.com,http://localhost:3000``: other sites whose pages may post to
    the services (a web console), each as a browser sends it in ``Origin``."""
    found = tuple(o.strip().lower().rstrip("/") for o in text.split(",") if o.strip())
    for origin in found:
        scheme, sep, authority = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not authority or any(c in authority for c in "/@?# "):
            raise ValueError(f"{origin!r} is not an origin (write scheme://host[:port], no path)")
    return found


def split_host(host: str) -> tuple[str, str | None]:
    """``(name, port)`` of a ``Host`` value: ``"localhost:8004"`` -> ``("localhost", "8004")``,
    ``"[::1]"`` -> ``("[::1]", "")``; port None when the value is malformed."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        name, rest = host[: end + 1], host[end + 1 :]
        if not rest:
            return name, ""
        return (name, rest[1:]) if rest[0] == ":" else (name, None)
    name, sep, port = host.partition(":")
    return name, port if sep else ""


def parse_role_limits(text: str) -> dict[str, tuple[float, float]]:
    """``agent=1000:2000,reviewer=5:10`` -> role -> (tokens per second, burst)."""
    out: dict[str, tuple[float, float]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        role, sep, spec = item.partition("=")
        role = role.strip().lower()
        if not sep or role not in ROLES:
            raise ValueError(f"{item!r}: use role=rate[:burst] with a role among {', '.join(ROLES)}")
        rate_text, _, burst_text = spec.partition(":")
        rate = _non_negative(rate_text.strip())
        burst = _non_negative(burst_text.strip()) if burst_text.strip() else max(1.0, rate)
        out[role] = (rate, burst)
    return out


def _role_limits_text(text: str) -> str:
    parse_role_limits(text)
    return text


_PARSERS: dict[str, Callable[[str], Any]] = {
    "auth": _flag,
    "data_dir": Path,
    "key_store": _optional_text,
    "key_refresh": _non_negative,
    "public_metrics": _flag,
    "jwt_algorithms": _algorithms,
    "jwt_hs256_key": _optional_text,
    "jwt_hs256_key_file": _optional_path,
    "jwt_public_key_file": _optional_path,
    "jwt_issuer": _optional_text,
    "jwt_audience": _optional_text,
    "jwt_roles_claim": str,
    "jwt_leeway": _non_negative,
    "rate_limit": _non_negative,
    "rate_burst": _non_negative,
    "rate_limit_roles": _role_limits_text,
    "redis_url": resolve_optional_url,  # a reference, or {reference} as the password, is read at start
    "redis_timeout_ms": _non_negative,
    "redis_retry_after": _non_negative,
    "tls_cert_file": _optional_path,
    "tls_key_file": _optional_path,
    "tls_client_ca_file": _optional_path,
    "allowed_hosts": _hosts,
    "allowed_origins": _origins,
    "insecure": _flag,
}


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Who may call the services, how often, and over what transport. Defaults: no
    authentication (like OPA), no rate limit, plain HTTP, which suits one node on loopback."""

    #: Require credentials (API key or JWT) on every route but health checks.
    auth: bool = False
    #: Where the default key store lives (``keys.sqlite3``).
    data_dir: Path = Path(".acgs-data")
    #: ``sqlite:///path`` or ``postgresql://...`` (share keys between nodes); None: SQLite
    #: under ``data_dir``.
    key_store: str | None = None
    #: Seconds between reloads of the key store into memory; a revocation takes effect on
    #: every node within this time. 0 reloads before every request (tests only).
    key_refresh: float = 5.0
    #: Serve ``/metrics`` without credentials when auth is on (default: role auditor).
    public_metrics: bool = False
    #: JWT algorithms accepted: HS256 and/or RS256; empty: JWTs are refused.
    jwt_algorithms: tuple[str, ...] = ()
    #: Shared key for HS256 (prefer ``jwt_hs256_key_file`` or a ``file:``/``vault:`` reference:
    #: variables leak into process listings and crash reports). Keys are re-read as they rotate
    #: (``acgs.security.tokens``).
    jwt_hs256_key: str | None = None
    jwt_hs256_key_file: Path | None = None
    #: PEM public key verifying RS256 tokens: a file, or a ``file:``/``env:``/``vault:`` reference.
    jwt_public_key_file: Path | None = None
    #: Required ``iss`` and ``aud`` when set.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    #: Claim holding the roles: a list or a space/comma separated string; dots walk into
    #: objects (``realm_access.roles``).
    jwt_roles_claim: str = "roles"
    #: Clock skew tolerated on ``exp``/``nbf``/``iat``, seconds.
    jwt_leeway: float = 30.0
    #: Requests per second per principal (token bucket refill); 0: no limit.
    rate_limit: float = 0.0
    #: Bucket size (requests allowed at once); 0: max(1, rate_limit).
    rate_burst: float = 0.0
    #: Per-role limits overriding the defaults, ``role=rate[:burst],...`` (``agent=1000:2000,
    #: admin=0``; 0 is unlimited); a principal with several roles gets its most generous.
    rate_limit_roles: str = ""
    #: Shared buckets in Redis when set (the same variable as the policy service's L2 cache). A
    #: secrets-store reference, or one as the password, is resolved when the settings are read.
    redis_url: str | None = None
    redis_timeout_ms: float = 50.0
    #: After a Redis failure, seconds during which buckets are kept in process.
    redis_retry_after: float = 1.0
    #: TLS: certificate chain and key (PEM); mutual TLS when a client CA is set.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    #: Names a request's ``Host`` may carry besides the loopback names (``localhost``,
    #: ``127.0.0.1``, ``[::1]``, on any port), which are always accepted: the name clients and
    #: the proxy in front use. Any other name is refused (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    #: Other sites whose pages may post to the services (``scheme://host[:port]``); a page of
    #: the service's own origin always may.
    allowed_origins: tuple[str, ...] = ()
    #: With authentication off, listen on an address other than loopback anyway: anyone who
    #: can reach the port is then trusted with every claim it makes.
    insecure: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SecuritySettings:
        """Defaults, then ``ACGS_*`` variables, then ``overrides``. A malformed variable or an
        incomplete combination raises ``ValueError`` naming it."""
        values = read_env(ENV_NAMES, _PARSERS, environ)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> SecuritySettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Refuses combinations that could not work, naming the variables to set."""
        if "HS256" in self.jwt_algorithms and not (self.jwt_hs256_key or self.jwt_hs256_key_file):
            raise ValueError("ACGS_JWT_ALGORITHMS includes HS256: set ACGS_JWT_HS256_KEY_FILE (or ACGS_JWT_HS256_KEY)")
        if "RS256" in self.jwt_algorithms and self.jwt_public_key_file is None:
            raise ValueError("ACGS_JWT_ALGORITHMS includes RS256: set ACGS_JWT_PUBLIC_KEY_FILE to a PEM public key")
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("ACGS_TLS_KEY_FILE is set without ACGS_TLS_CERT_FILE")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("ACGS_TLS_CLIENT_CA_FILE (mutual TLS) needs ACGS_TLS_CERT_FILE and ACGS_TLS_KEY_FILE")
        if (
            self.key_store
            and not is_reference(self.key_store)
            and not self.key_store.startswith(("sqlite:///", "postgresql://", "postgres://"))
        ):
            raise ValueError(f"ACGS_AUTH_KEY_STORE={self.key_store!r}: use sqlite:///path or postgresql://...")
        try:
            parse_role_limits(self.rate_limit_roles)
        except ValueError as exc:
            raise ValueError(f"ACGS_RATE_LIMIT_ROLES={self.rate_limit_roles!r}: {exc}") from None

    def resolved_key_store(self) -> str:
        """The key store's URL, a secrets-store reference in it resolved."""
        return resolve_url(self.key_store) if self.key_store else f"sqlite:///{self.data_dir / 'keys.sqlite3'}"

    def hs256_key(self) -> bytes | None:
        if self.jwt_hs256_key_file is not None:
            return self.jwt_hs256_key_file.read_bytes().strip()
        return resolve(self.jwt_hs256_key).encode() if self.jwt_hs256_key else None

    def limit_for(self, roles: frozenset[str]) -> tuple[float, float]:
        """(tokens per second, burst) for a principal with ``roles``; rate 0 means unlimited."""
        by_role = parse_role_limits(self.rate_limit_roles)
        overrides = [by_role[r] for r in roles if r in by_role]
        if overrides:
            # Unlimited (0) beats any finite rate.
            rate, burst = max(overrides, key=lambda rb: (rb[0] == 0, rb[0], rb[1]))
            return rate, burst or max(1.0, rate)
        return self.rate_limit, self.rate_burst or max(1.0, self.rate_limit)

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready values, the HS256 key and Redis credentials masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        if self.jwt_hs256_key:
            out["jwt_hs256_key"] = "***"
        for name in ("redis_url", "key_store"):
            url = out[name]
            if url and "@" in url:
                scheme, _, rest = url.partition("://")
                out[name] = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return out

    @property
    def enforcing(self) -> bool:
        """Whether a request needs looking at at all (credentials or a rate limit)."""
        return self.auth or self.rate_limit > 0 or bool(self.rate_limit_roles)
