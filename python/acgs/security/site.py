"""The checks every request to every service passes, authentication on or off, before anything
else looks at it:

- ``Host`` must be one of the service's names: the loopback names, plus those the operator
  configures (``allowed_hosts``). A page whose DNS name an attacker points at 127.0.0.1 (DNS
  rebinding) is same-origin with itself, not with ACGS, and still sends its own name.
- A state-changing request (POST, PUT, PATCH, DELETE) must not come from another site: an
  ``Origin`` other than the service's own (or one the operator allows), or ``Sec-Fetch-Site:
  cross-site``/``same-site``, is refused. Browsers set both headers and pages cannot forge them;
  clients that are not browsers send neither, or their own origin, and carry no ambient
  credentials.
- A body must be JSON (``application/json`` or ``application/*+json``): the forms and
  ``text/plain`` posts a page may send another site without a CORS preflight never reach a
  route. Pages served for browsers (``Access.browser``) also accept their own URL-encoded forms.

The check reads the raw header list once; a request that passes costs about a microsecond."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from acgs.security.gate import ACGS_ERRORS, Denial, ErrorStyle
from acgs.security.settings import SecuritySettings, split_host

#: Always accepted in ``Host``, on any port.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Methods that change state: the ones a cross-site page must not send.
UNSAFE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
#: Set in the scope once a request passed, so a second guard in the stack lets it by.
CHECKED = "acgs.site_checked"

_FORM = b"application/x-www-form-urlencoded"
_FOREIGN_SITES = (b"cross-site", b"same-site")
#: The headers the check reads, by their place in its list (Host and Origin must be single).
_SLOTS = {b"host": 0, b"origin": 1, b"sec-fetch-site": 2, b"content-type": 3, b"content-length": 4, b"transfer-encoding": 5}
_MEMO_SIZE = 1024


class SiteMetrics(Collector):
    """``acgs_site_refusals_total{service, reason}``."""

    REASONS = ("host_not_allowed", "cross_site_request", "unsupported_media_type", "malformed_headers")

    def __init__(self, guard: SiteGuard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        refusals = CounterMetricFamily(
            "acgs_site_refusals",
            "Requests refused before routing: a Host not configured, another site's post, a body that is not JSON",
            labels=["service", "reason"],
        )
        for reason in self.REASONS:
            refusals.add_metric([self.guard.service, reason], self.guard.counts[reason])
        yield refusals


def _body(code: str, reason: str, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message, "errors": [{"code": reason, "message": message}]})


def _is_json(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class SiteGuard:
    """Host, site and content-type checks for one service."""

    def __init__(
        self,
        settings: SecuritySettings,
        *,
        service: str,
        style: ErrorStyle = ACGS_ERRORS,
        forms: Iterable[str] = (),
    ) -> None:
        self.service = service
        self.style = style
        self.any_host = "*" in settings.allowed_hosts
        names: set[bytes] = {h.encode() for h in LOOPBACK_HOSTS}
        exact: set[bytes] = set()
        for host in settings.allowed_hosts:
            name, port = split_host(host)
            if port:
                exact.add(host.encode())
            else:
                names.add(name.rstrip(".").encode() if not name.startswith("[") else name.encode())
        #: Names accepted on any port, and ``name:port`` values accepted as they are.
        self.names = frozenset(names)
        self.exact = frozenset(exact)
        self.origins = frozenset(o.encode() for o in settings.allowed_origins)
        #: Path prefixes whose posts may be URL-encoded forms (pages served for browsers).
        self.forms = tuple(forms)
        self._hosts: dict[bytes, bool] = {}
        self._types: dict[bytes, bool] = {}
        self.counts: dict[str, int] = dict.fromkeys(SiteMetrics.REASONS, 0)
        self.metrics = SiteMetrics(self)

    def host_allowed(self, host: bytes) -> bool:
        known = self._hosts.get(host)
        if known is not None:
            return known
        value = host.strip().lower()
        name, port = split_host(value.decode("latin-1"))
        if port is None or (port and not port.isdigit()):
            ok = False
        elif self.any_host:
            ok = bool(name)
        else:
            bare = name.encode("latin-1")
            # "localhost." is the same name as "localhost", fully qualified.
            if bare.endswith(b".") and not bare.startswith(b"["):
                bare = bare[:-1]
            ok = bare in self.names or value in self.exact
        if len(self._hosts) >= _MEMO_SIZE:
            self._hosts.clear()
        self._hosts[host] = ok
        return ok

    def _is_json(self, content_type: bytes) -> bool:
        known = self._types.get(content_type)
        if known is None:
            if len(self._types) >= _MEMO_SIZE:
                self._types.clear()
            known = self._types[content_type] = _is_json(content_type)
        return known

    def origin_allowed(self, origin: bytes, host: bytes) -> bool:
        """The service's own origin (the same authority as ``Host``) or a configured one."""
        origin = origin.strip().lower()
        if origin in self.origins:
            return True
        scheme, sep, authority = origin.partition(b"://")
        if not sep or scheme not in (b"http", b"https"):
            return False  # "null" (sandboxed frames, file: pages) included
        host = host.strip().lower()
        if authority == host:
            return True
        # Browsers leave the scheme's default port out of Origin; a client may write it in Host.
        return host == authority + (b":443" if scheme == b"https" else b":80")

    def check(self, scope: MutableMapping[str, Any]) -> Denial | None:
        """None if the request may go on, else the refusal to send."""
        if scope.get(CHECKED):
            return None
        found: list[bytes | None] = [None, None, None, None, None, None]
        for name, value in scope["headers"]:
            slot = _SLOTS.get(name)
            if slot is not None:
                if slot < 2 and found[slot] is not None:
                    what = "Host" if slot == 0 else "Origin"
                    return self._refuse(400, self.style.invalid, "malformed_headers", f"more than one {what} header")
                found[slot] = value
        host, origin, site, content_type, length, chunked = found
        if host is None or not self.host_allowed(host):
            shown = "none" if host is None else repr(host.decode("latin-1"))
            return self._refuse(
                400,
                self.style.invalid,
                "host_not_allowed",
                f"Host {shown} is not a name of this service; configure it in [security] allowed_hosts "
                "(ACGS_ALLOWED_HOSTS) if clients reach the service under that name",
            )
        if scope.get("method", "GET") in UNSAFE_METHODS:
            if origin is not None and not self.origin_allowed(origin, host):
                return self._refuse(
                    403,
                    self.style.forbidden,
                    "cross_site_request",
                    f"a {scope['method']} from {origin.decode('latin-1')!r} is refused: only this service's own pages "
                    "and the origins in [security] allowed_origins (ACGS_ALLOWED_ORIGINS) may post here",
                )
            if site is not None and site.strip().lower() in _FOREIGN_SITES and (
                origin is None or origin.strip().lower() not in self.origins
            ):
                return self._refuse(
                    403,
                    self.style.forbidden,
                    "cross_site_request",
                    f"a {scope['method']} another site made a browser send (Sec-Fetch-Site: {site.decode('latin-1')}) is refused",
                )
            has_body = chunked is not None or (length is not None and length.strip() != b"0")
            if has_body and not (content_type is not None and self._is_json(content_type)):
                if not (
                    content_type is not None
                    and content_type.partition(b";")[0].strip().lower() == _FORM
                    and scope["path"].startswith(self.forms)
                ):
                    sent = "none" if content_type is None else repr(content_type.decode("latin-1"))
                    return self._refuse(
                        415,
                        self.style.invalid,
                        "unsupported_media_type",
                        f"the request body must be JSON: send Content-Type: application/json (got {sent})",
                    )
        scope[CHECKED] = True
        return None

    def _refuse(self, status: int, code: str, reason: str, message: str) -> Denial:
        self.counts[reason] += 1
        return Denial(status, _body(code, reason, message), {})


class SiteMiddleware:
    """Pure ASGI middleware: every HTTP request through ``SiteGuard.check``; a WebSocket
    handshake through the Host check."""

    def __init__(self, app: ASGIApp, guard: SiteGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            denial = self.guard.check(scope)
            if denial is not None:
                await denial.send(send)
                return
        elif kind == "websocket":
            host = next((v for k, v in scope["headers"] if k == b"host"), None)
            if host is None or not self.guard.host_allowed(host):
                await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
