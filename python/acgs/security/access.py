"""Which roles each route accepts: a service writes its table once, as a list of
``Rule("METHOD /path/{param}", role, ...)``, and the gate looks requests up in it.

Paths use Starlette's templates (``{name}`` is one segment, ``{name:path}`` the rest). The
first matching rule wins. A request no rule matches (a 404 to be) needs some role, so an
anonymous caller learns nothing about which routes exist."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from acgs.security.principal import ROLES

#: The marker for routes anyone may call (health checks).
PUBLIC = "public"

_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-z]+))?\}")
_MEMO_SIZE = 4096


def _compile(template: str) -> re.Pattern[str]:
    out = ["^"]
    pos = 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(".*" if m.group(2) == "path" else "[^/]+")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    out.append("$")
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class Rule:
    """``Rule("GET,POST /v1/data/{path:path}", "agent", "auditor")``; ``PUBLIC`` alone means no
    credentials. ``admin`` is accepted everywhere without being listed."""

    route: str
    roles: tuple[str, ...]
    methods: frozenset[str]
    path: str
    pattern: re.Pattern[str]
    #: The roles with ``admin``.
    accepted: frozenset[str]
    public: bool

    def __init__(self, route: str, *roles: str) -> None:
        method_text, _, path = route.partition(" ")
        methods = frozenset(m.strip().upper() for m in method_text.split(",") if m.strip())
        if not path.startswith("/") or not methods:
            raise ValueError(f"rule {route!r}: write 'METHOD[,METHOD] /path'")
        unknown = [r for r in roles if r not in ROLES and r != PUBLIC]
        if unknown or not roles or (PUBLIC in roles and len(roles) > 1):
            raise ValueError(f"rule {route!r}: roles must be {PUBLIC!r} alone or among {', '.join(ROLES)}")
        if "GET" in methods:
            methods = methods | {"HEAD"}
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "pattern", _compile(path))
        object.__setattr__(self, "accepted", frozenset(roles) | {"admin"})
        object.__setattr__(self, "public", PUBLIC in roles)

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.pattern.match(path) is not None


#: OpenAPI document and its viewers, on every service: any role.
DOCS = (
    Rule("GET /openapi.json", *ROLES),
    Rule("GET /docs", *ROLES),
    Rule("GET /docs/oauth2-redirect", *ROLES),
    Rule("GET /redoc", *ROLES),
)

#: For requests no rule covers.
UNLISTED = Rule("GET,POST,PUT,PATCH,DELETE,OPTIONS /{any:path}", *ROLES)


class Access:
    """A service's route table (its rules, then ``DOCS``)."""

    def __init__(self, service: str, rules: Iterable[Rule], *, browser: Iterable[str] = ()) -> None:
        self.service = service
        self.rules = (*rules, *DOCS)
        #: Path prefixes of pages people open in a browser: their 401 also offers Basic auth,
        #: so the browser asks for a name and the API key as password.
        self.browser = tuple(browser)
        self._memo: dict[tuple[str, str], Rule] = {}

    def rule_for(self, method: str, path: str) -> Rule:
        key = (method, path)
        found = self._memo.get(key)
        if found is not None:
            return found
        found = next((r for r in self.rules if r.matches(method, path)), UNLISTED)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = found
        return found

    def is_browser_page(self, path: str) -> bool:
        return any(path.startswith(p) for p in self.browser)

    def with_public_metrics(self) -> Access:
        """The same table with ``GET /metrics`` open to anyone."""
        return Access(self.service, (Rule("GET /metrics", PUBLIC), *self.rules[: -len(DOCS)]), browser=self.browser)

    def table(self) -> list[tuple[str, str]]:
        """(route, roles) rows, for documentation."""
        return [(r.route, "anyone" if r.public else ", ".join((*r.roles, "admin") if "admin" not in r.roles else r.roles)) for r in self.rules]
