"""Reviewers and operators sign in with OpenID Connect (single sign-on).

``OidcSettings`` (``ACGS_OIDC_*``) names the identity provider (its issuer), ACGS's client at it
and how the provider's groups map to ACGS roles. ``OidcSignIn`` adds ``/auth/login``,
``/auth/callback`` and ``/auth/logout`` to a service and turns a signed-in session into a
``Principal`` the security gate accepts on the service's browser pages:

- the authorization-code flow with PKCE (S256), ``state`` and ``nonce``, all through Authlib;
  the discovery document and the JWKS come from the provider (an ID token signed with a key id
  not seen before makes Authlib fetch the JWKS again, so the provider rotates keys without ACGS
  restarting);
- the ID token's issuer and audience are checked against the configuration, not only against
  the discovery document;
- the session is a signed cookie (Starlette's session middleware, itsdangerous), HttpOnly,
  ``SameSite=Lax`` (``Strict`` would drop the cookie on the provider's redirect back, losing the
  sign-in's state), ``Secure`` unless ACGS is reached on a loopback address over HTTP. It lives
  ``session_lifetime`` seconds from sign-in, however active; signing out revokes it in this
  process even if a copy of the cookie is kept;
- the principal's roles come only from ``role_map`` applied to the provider's group claim, read
  afresh on every request: a user whose groups map to no role cannot sign in, and a group
  removed from the mapping takes effect at once;
- every session carries a CSRF token the pages put in their forms (``check_csrf``).
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from acgs.security.access import DOCS, PUBLIC, Access, Rule
from acgs.security.principal import MAPPABLE_ROLES, Principal
from acgs.services.common.env import positive_float, read_env

log = logging.getLogger("acgs.security.oidc")

LOGIN = "/auth/login"
CALLBACK = "/auth/callback"
LOGOUT = "/auth/logout"
#: The session's member holding the signed-in user (the rest is Authlib's sign-in state).
SESSION_KEY = "acgs_oidc"
_NEXT_KEY = "acgs_next"
#: Set by a sign-out: the next sign-in asks the provider to authenticate the user again.
_REAUTH_KEY = "acgs_reauth"
#: Where a sign-in lands when it was not sent from a page.
DEFAULT_LANDING = "/evolution/review"

ENV_NAMES: dict[str, str] = {
    "issuer": "ACGS_OIDC_ISSUER",
    "discovery_url": "ACGS_OIDC_DISCOVERY_URL",
    "client_id": "ACGS_OIDC_CLIENT_ID",
    "client_secret_file": "ACGS_OIDC_CLIENT_SECRET_FILE",
    "redirect_base_url": "ACGS_OIDC_REDIRECT_BASE_URL",
    "scopes": "ACGS_OIDC_SCOPES",
    "groups_claim": "ACGS_OIDC_GROUPS_CLAIM",
    "role_map": "ACGS_OIDC_ROLE_MAP",
    "session_secret_file": "ACGS_OIDC_SESSION_SECRET_FILE",
    "session_lifetime": "ACGS_OIDC_SESSION_LIFETIME",
    "cookie_name": "ACGS_OIDC_COOKIE_NAME",
    "cookie_secure": "ACGS_OIDC_COOKIE_SECURE",
    "http_timeout": "ACGS_OIDC_HTTP_TIMEOUT",
}


class OidcError(Exception):
    """A sign-in that cannot succeed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_role_map(text: str) -> dict[str, frozenset[str]]:
    """``group=role[,role];group=role`` (a group may contain ``=`` and ``,``, as directory
    names do: the last ``=`` of an entry separates it from its roles), or a JSON object
    ``{"group": ["role", ...]}``. Roles must be ACGS's (not ``service``)."""
    text = text.strip()
    pairs: list[tuple[str, list[str]]] = []
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError("the JSON form must be an object of group -> list of roles")
        for group, roles in loaded.items():
            if isinstance(roles, str):
                roles = [roles]
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise ValueError(f"group {group!r}: roles must be a list of strings")
            pairs.append((group, roles))
    else:
        for entry in text.split(";"):
            if not entry.strip():
                continue
            group, sep, roles_text = entry.strip().rpartition("=")
            if not sep or not group.strip():
                raise ValueError(f"entry {entry.strip()!r}: write group=role[,role]")
            pairs.append((group.strip(), roles_text.split(",")))
    out: dict[str, frozenset[str]] = {}
    for group, roles in pairs:
        cleaned = frozenset(r.strip().lower() for r in roles if r.strip())
        unknown = sorted(cleaned - set(MAPPABLE_ROLES))
        if unknown or not cleaned:
            got = ", ".join(unknown) or "none"
            raise ValueError(f"group {group!r}: roles must be among {', '.join(MAPPABLE_ROLES)} (got {got})")
        out[group] = out.get(group, frozenset()) | cleaned
    return out


def _scopes(text: str) -> tuple[str, ...]:
    found = tuple(s for s in text.replace(",", " ").split() if s)
    if "openid" not in found:
        raise ValueError("must include openid")
    return found


def _flag(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("", "auto"):
        return None
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true, false or auto")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "issuer": lambda t: t.rstrip("/"),
    "discovery_url": str,
    "client_id": str,
    "client_secret_file": lambda t: Path(t) if t else None,
    "redirect_base_url": lambda t: t.rstrip("/"),
    "scopes": _scopes,
    "groups_claim": str,
    "role_map": parse_role_map,
    "session_secret_file": lambda t: Path(t) if t else None,
    "session_lifetime": positive_float,
    "cookie_name": str,
    "cookie_secure": _flag,
    "http_timeout": positive_float,
}


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Single sign-on settings; off while ``issuer`` is empty."""

    #: The provider's issuer URL, exactly as its ID tokens carry it.
    issuer: str = ""
    #: Default: ``<issuer>/.well-known/openid-configuration``.
    discovery_url: str = ""
    client_id: str = ""
    #: A file holding the client secret (one line).
    client_secret_file: Path | None = None
    #: ACGS's external URL as browsers reach it; the callback is ``<this>/auth/callback``.
    redirect_base_url: str = ""
    scopes: tuple[str, ...] = ("openid", "profile", "groups")
    #: The claim listing the user's groups (a dotted path reaches into objects:
    #: ``realm_access.roles``); read from the ID token, else from the userinfo endpoint.
    groups_claim: str = "groups"
    #: Provider group -> ACGS roles. The only source of a signed-in user's roles.
    role_map: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    #: A file holding the key that signs session cookies (at least 32 bytes). Without one, a key
    #: is made per process: sessions then end with the process and do not span workers.
    session_secret_file: Path | None = None
    #: Seconds from sign-in to the session's end.
    session_lifetime: float = 8 * 3600.0
    cookie_name: str = "acgs_session"
    #: None: Secure unless ``redirect_base_url`` is plain HTTP on a loopback address.
    cookie_secure: bool | None = None
    #: Seconds to wait for the provider's discovery, JWKS, token and userinfo endpoints.
    http_timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> OidcSettings:
        values = read_env(ENV_NAMES, _PARSERS, environ)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    @property
    def metadata_url(self) -> str:
        return self.discovery_url or f"{self.issuer}/.well-known/openid-configuration"

    @property
    def callback_url(self) -> str:
        return f"{self.redirect_base_url}{CALLBACK}"

    @property
    def secure_cookie(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        parts = urlsplit(self.redirect_base_url)
        return not (parts.scheme == "http" and _loopback(parts.hostname))

    def validate(self) -> None:
        """Refuses a configuration that could not work or would not be safe, naming the
        variable to set."""
        if not self.enabled:
            return
        for url, var in ((self.issuer, "ACGS_OIDC_ISSUER"), (self.redirect_base_url, "ACGS_OIDC_REDIRECT_BASE_URL")):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{var}={url!r}: an http(s) URL is required")
            if parts.scheme == "http" and not _loopback(parts.hostname):
                raise ValueError(f"{var}={url!r}: use https (plain http only on a loopback address)")
        if not self.client_id:
            raise ValueError("ACGS_OIDC_ISSUER is set: set ACGS_OIDC_CLIENT_ID")
        if self.client_secret_file is None:
            raise ValueError("ACGS_OIDC_ISSUER is set: set ACGS_OIDC_CLIENT_SECRET_FILE to a file holding the client secret")
        if not self.role_map:
            raise ValueError("ACGS_OIDC_ISSUER is set: set ACGS_OIDC_ROLE_MAP (group=role;...): roles come only from it")
        if not self.groups_claim:
            raise ValueError("ACGS_OIDC_GROUPS_CLAIM must name a claim")

    def client_secret(self) -> str:
        assert self.client_secret_file is not None
        secret = self.client_secret_file.read_text().strip()
        if not secret:
            raise ValueError(f"ACGS_OIDC_CLIENT_SECRET_FILE {self.client_secret_file} is empty")
        return secret

    def session_secret(self) -> str:
        if self.session_secret_file is None:
            log.warning("oidc: no ACGS_OIDC_SESSION_SECRET_FILE; sessions are signed with a key of this process only")
            return secrets.token_urlsafe(48)
        secret = self.session_secret_file.read_text().strip()
        if len(secret) < 32:
            raise ValueError(f"ACGS_OIDC_SESSION_SECRET_FILE {self.session_secret_file}: the key must be at least 32 characters")
        return secret

    def roles_for(self, groups: Iterable[str]) -> frozenset[str]:
        roles: frozenset[str] = frozenset()
        for group in groups:
            roles |= self.role_map.get(group, frozenset())
        return roles


def groups_of(claims: Mapping[str, Any], claim: str) -> list[str] | None:
    """The group names in ``claims[claim]`` (a dotted path reaches into objects); None when the
    claim is absent. A single string counts as one group; entries that are not strings are
    ignored."""
    value: Any = claims
    for part in claim.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return []


def safe_next(target: str | None) -> str:
    """A place on this site to return to after signing in: a path, never another origin."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n\\"):
        return DEFAULT_LANDING
    return target


def with_sign_in(access: Access) -> Access:
    """``access`` with the sign-in routes open to anyone (their handlers check what they need)
    and their forms accepted by the site guard."""
    rules = (
        Rule(f"GET {LOGIN}", PUBLIC),
        Rule(f"GET {CALLBACK}", PUBLIC),
        Rule(f"POST {LOGOUT}", PUBLIC),
        *access.rules[: -len(DOCS)],
    )
    return Access(access.service, rules, browser=(*access.browser, "/auth/"))


def _page(title: str, message: str, status: int, link: tuple[str, str] | None = None) -> HTMLResponse:
    extra = f'<p><a href="{escape(link[0], quote=True)}">{escape(link[1])}</a></p>' if link else ""
    kind, role = ("notice", "status") if status < 400 else ("error", "alert")
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 48rem; padding: 1rem 1.5rem; }}
.error {{ background: #fdecea; padding: .5rem .8rem; border-radius: 4px; }}
.notice {{ background: #e8f5e9; padding: .5rem .8rem; border-radius: 4px; }}</style></head>
<body><h1>{escape(title)}</h1><p class="{kind}" role="{role}">{escape(message)}</p>{extra}</body></html>"""
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


class OidcSignIn:
    """Sign-in through one provider for one app: ``install(app, paths)``."""

    def __init__(self, settings: OidcSettings) -> None:
        from authlib.integrations.starlette_client import OAuth

        settings.validate()
        if not settings.enabled:
            raise ValueError("OIDC sign-in needs ACGS_OIDC_ISSUER")
        self.settings = settings
        self._session_secret = settings.session_secret()
        oauth = OAuth()
        self.client: Any = oauth.register(
            "acgs",
            client_id=settings.client_id,
            client_secret=settings.client_secret(),
            server_metadata_url=settings.metadata_url,
            client_kwargs={"scope": " ".join(settings.scopes), "code_challenge_method": "S256", "timeout": settings.http_timeout},
        )
        #: Path prefixes where a session stands for its user (the pages for browsers).
        self.paths: tuple[str, ...] = ()
        #: Sessions signed out before their end: session id -> when it would have ended.
        self._revoked: dict[str, float] = {}

    # -- sessions --------------------------------------------------------------------------

    def identity(self, scope: MutableMapping[str, Any]) -> dict[str, Any] | None:
        """The signed-in user of a request (sub, iss, groups, csrf, ...), or None: no session,
        one of another issuer, past its end, or signed out."""
        session = scope.get("session")
        data = session.get(SESSION_KEY) if isinstance(session, dict) else None
        if not isinstance(data, dict):
            return None
        sid, sub, iss, exp = data.get("sid"), data.get("sub"), data.get("iss"), data.get("exp")
        groups = data.get("groups")
        if not (isinstance(sid, str) and isinstance(sub, str) and sub and isinstance(iss, str)):
            return None
        if not isinstance(data.get("csrf"), str):
            return None
        if iss != self.settings.issuer or not isinstance(exp, int | float) or exp <= time.time():
            return None
        if not isinstance(groups, list) or sid in self._revoked:
            return None
        return data

    def principal(self, scope: MutableMapping[str, Any]) -> Principal | None:
        """The request's signed-in user as a principal; roles only from the role map."""
        data = self.identity(scope)
        if data is None:
            return None
        groups = [g for g in data["groups"] if isinstance(g, str)]
        return Principal(data["sub"], self.settings.roles_for(groups), "oidc", issuer=data["iss"])

    def sign_in_location(self, scope: MutableMapping[str, Any]) -> str:
        target = scope.get("path", "/")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        return f"{LOGIN}?next={quote(target, safe='')}"

    def csrf_token(self, scope: MutableMapping[str, Any]) -> str | None:
        data = self.identity(scope)
        return data["csrf"] if data is not None else None

    def check_csrf(self, scope: MutableMapping[str, Any], sent: str | None) -> bool:
        expected = self.csrf_token(scope)
        return expected is not None and sent is not None and hmac.compare_digest(expected.encode(), sent.encode())

    def _revoke(self, sid: str, until: float) -> None:
        now = time.time()
        if len(self._revoked) > 1024:
            self._revoked = {s: t for s, t in self._revoked.items() if t > now}
        self._revoked[sid] = until

    # -- the flow --------------------------------------------------------------------------

    @property
    def claims_options(self) -> dict[str, dict[str, Any]]:
        """What an ID token must say besides a valid signature, nonce and times: the configured
        issuer (not merely the discovery document's) and this client among its audience."""
        return {
            "iss": {"essential": True, "value": self.settings.issuer},
            "aud": {"essential": True, "value": self.settings.client_id},
            "sub": {"essential": True},
        }

    async def login(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if self.identity(request.scope) is not None:
            return RedirectResponse(target, status_code=303)
        request.session.pop(SESSION_KEY, None)
        request.session[_NEXT_KEY] = target
        # After a sign-out the provider's own session would sign the same person in again
        # without asking: prompt=login makes it ask.
        extra = {"prompt": "login"} if request.session.get(_REAUTH_KEY) else {}
        try:
            response: Response = await self.client.authorize_redirect(request, self.settings.callback_url, **extra)
        except Exception as exc:  # discovery unreachable or malformed: nobody signs in
            log.error("oidc: cannot start a sign-in at %s: %s: %s", self.settings.issuer, type(exc).__name__, exc)
            return _page("Sign-in unavailable", f"the identity provider {self.settings.issuer} cannot be reached", 502)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def user_from_callback(self, request: Request) -> dict[str, Any]:
        """Finishes the sign-in: checks state, swaps the code (with the PKCE verifier) for
        tokens, checks the ID token (signature by the provider's JWKS, issuer, audience,
        nonce, expiry) and reads the groups. Raises ``OidcError`` for anything else."""
        from authlib.integrations.base_client import OAuthError

        try:
            token = await self.client.authorize_access_token(request, claims_options=self.claims_options)
        except OAuthError as exc:
            raise OidcError(f"the sign-in was refused: {exc.error or ''} {exc.description or ''}".strip()) from None
        except Exception as exc:
            log.warning("oidc: sign-in failed: %s: %s", type(exc).__name__, exc)
            raise OidcError(f"the sign-in could not be completed ({type(exc).__name__})") from None
        claims = token.get("userinfo")
        if not isinstance(claims, Mapping):
            raise OidcError("the provider sent no ID token (or the sign-in had no nonce)")
        sub, iss = claims.get("sub"), claims.get("iss")
        if not isinstance(sub, str) or not sub or iss != self.settings.issuer:
            raise OidcError("the ID token names no subject of the configured issuer")
        groups = groups_of(claims, self.settings.groups_claim)
        if groups is None:
            try:
                info = await self.client.userinfo(token=token)
            except Exception as exc:
                raise OidcError(f"the provider's userinfo endpoint failed ({type(exc).__name__})", 502) from None
            if info.get("sub") != sub:
                raise OidcError("the userinfo endpoint answered for another subject")
            groups = groups_of(info, self.settings.groups_claim) or []
        name = claims.get("name") or claims.get("preferred_username") or claims.get("email") or sub
        return {"sub": sub, "iss": iss, "groups": groups, "name": name if isinstance(name, str) else sub}

    async def callback(self, request: Request) -> Response:
        try:
            user = await self.user_from_callback(request)
        except OidcError as exc:
            request.session.clear()
            return _page("Sign-in failed", exc.message, exc.status, (LOGIN, "Try again"))
        target = safe_next(request.session.get(_NEXT_KEY))
        # A new session for the new user: nothing from before the sign-in is kept.
        request.session.clear()
        roles = self.settings.roles_for(user["groups"])
        if not roles:
            shown = ", ".join(user["groups"]) or "none"
            log.info("oidc: %s at %s has groups (%s) that map to no ACGS role: refused", user["sub"], user["iss"], shown)
            return _page(
                "Not permitted",
                f"{user['name']} ({user['sub']} at {user['iss']}) is signed in at the identity provider, but the groups "
                f"({shown}) map to no ACGS role: ask an administrator to add one to ACGS_OIDC_ROLE_MAP",
                403,
            )
        request.session[SESSION_KEY] = {
            **user,
            "sid": secrets.token_urlsafe(18),
            "csrf": secrets.token_urlsafe(32),
            "at": time.time(),
            "exp": time.time() + self.settings.session_lifetime,
        }
        log.info("oidc: %s at %s signed in with roles %s", user["sub"], user["iss"], ",".join(sorted(roles)))
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})

    async def logout(self, request: Request) -> Response:
        data = self.identity(request.scope)
        if data is not None:
            form = await request.form()
            sent = form.get("csrf")
            if not self.check_csrf(request.scope, sent if isinstance(sent, str) else None):
                message = "the sign-out form is stale or came from another page: sign out from ACGS's page"
                return _page("Not signed out", message, 403)
            self._revoke(data["sid"], float(data["exp"]))
        request.session.clear()
        request.session[_REAUTH_KEY] = True
        return _page("Signed out", "You are signed out of ACGS.", 200, (LOGIN, "Sign in again"))

    # -- wiring ----------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route(LOGIN, self.login, methods=["GET"])
        router.add_api_route(CALLBACK, self.callback, methods=["GET"])
        router.add_api_route(LOGOUT, self.logout, methods=["POST"])
        return router

    def install(self, app: FastAPI, paths: Iterable[str]) -> None:
        """Adds the routes and the session cookie to ``app``; ``paths`` are the prefixes where
        a session stands for its user. Call after ``install_security`` (the session middleware
        must run before the gate) and hand ``self`` to the gate (``gate.sessions``)."""
        from starlette.middleware.sessions import SessionMiddleware

        self.paths = tuple(paths)
        app.include_router(self.router())
        app.add_middleware(
            SessionMiddleware,
            secret_key=self._session_secret,
            session_cookie=self.settings.cookie_name,
            max_age=max(1, int(self.settings.session_lifetime)),
            same_site="lax",
            https_only=self.settings.secure_cookie,
        )
        app.state.oidc = self


def sign_in_of(app: Any) -> OidcSignIn | None:
    """The app's single sign-on, or None when it is off."""
    found = getattr(app.state, "oidc", None)
    return found if isinstance(found, OidcSignIn) else None


__all__ = [
    "CALLBACK",
    "LOGIN",
    "LOGOUT",
    "MAPPABLE_ROLES",
    "OidcError",
    "OidcSettings",
    "OidcSignIn",
    "groups_of",
    "parse_role_map",
    "safe_next",
    "sign_in_of",
    "with_sign_in",
]
