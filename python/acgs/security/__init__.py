"""Identity, roles, rate limits and TLS for the ACGS services: API keys and JWTs name a
principal with roles (``agent``, ``reviewer``, ``auditor``, ``admin``), each service's route
table says which roles a route accepts, token buckets limit each principal, and
``uvicorn_tls_options`` turns on TLS or mutual TLS. See README.md beside this file."""

from __future__ import annotations

from acgs.security.access import PUBLIC, Access, Rule
from acgs.security.asgi import SecurityMiddleware, install_security
from acgs.security.gate import ACGS_ERRORS, OPA_ERRORS, Denial, ErrorStyle, Gate
from acgs.security.keys import ApiKey, ApiKeyError, KeyStore, create_key, open_key_store, revoke_key
from acgs.security.principal import ADMIN, AGENT, AUDITOR, REVIEWER, ROLES, Principal, principal_of
from acgs.security.settings import SecuritySettings
from acgs.security.site import LOOPBACK_HOSTS, SiteGuard, SiteMiddleware
from acgs.security.tls import uvicorn_tls_options

#: The name ``acgs serve`` imports.
tls_options = uvicorn_tls_options

__all__ = [
    "ACGS_ERRORS",
    "ADMIN",
    "AGENT",
    "AUDITOR",
    "LOOPBACK_HOSTS",
    "OPA_ERRORS",
    "PUBLIC",
    "REVIEWER",
    "ROLES",
    "Access",
    "ApiKey",
    "ApiKeyError",
    "Denial",
    "ErrorStyle",
    "Gate",
    "KeyStore",
    "Principal",
    "Rule",
    "SecurityMiddleware",
    "SecuritySettings",
    "SiteGuard",
    "SiteMiddleware",
    "create_key",
    "install_security",
    "open_key_store",
    "principal_of",
    "revoke_key",
    "tls_options",
    "uvicorn_tls_options",
]
