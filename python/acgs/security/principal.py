"""Who is calling: the roles ACGS knows and the principal a credential stands for."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

AGENT = "agent"
REVIEWER = "reviewer"
AUDITOR = "auditor"
ADMIN = "admin"
#: Every role; ``admin`` is accepted wherever any role is.
ROLES = (AGENT, REVIEWER, AUDITOR, ADMIN)

#: Key of the authenticated principal in the ASGI scope.
SCOPE_KEY = "acgs.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is the name others see (an API key's name, a JWT's
    ``sub``); ``bucket`` is what its rate limit is counted under."""

    subject: str
    roles: frozenset[str]
    #: ``api_key``, ``jwt`` or ``address`` (no authentication: the client's address).
    via: str
    key_id: str | None = None

    def accepted(self, roles: frozenset[str]) -> bool:
        return ADMIN in self.roles or not self.roles.isdisjoint(roles)

    @property
    def bucket(self) -> str:
        if self.via == "api_key":
            return f"key:{self.key_id}"
        return f"{self.via}:{self.subject}"


def principal_of(scope: MutableMapping[str, Any]) -> Principal | None:
    """The authenticated principal of a request, or None when authentication is off (or the
    route is public)."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None
