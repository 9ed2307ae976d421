"""Who is calling: the roles ACGS knows and the principal a credential stands for."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

AGENT = "agent"
REVIEWER = "reviewer"
AUDITOR = "auditor"
ADMIN = "admin"
#: ACGS's own services (their deliveries to the audit service): the only role, with ``admin``,
#: that may write the event types the services write.
SERVICE = "service"
#: Every role; ``admin`` is accepted wherever any role is.
ROLES = (AGENT, REVIEWER, AUDITOR, ADMIN, SERVICE)
#: Roles an identity provider's groups may grant (OIDC, LDAP): ``service`` is for ACGS's own
#: services only, which hold keys, not people's accounts.
MAPPABLE_ROLES = tuple(r for r in ROLES if r != SERVICE)

#: Key of the authenticated principal in the ASGI scope.
SCOPE_KEY = "acgs.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is the name others see (an API key's name, a JWT's
    or a single sign-on provider's ``sub``); ``bucket`` is what its rate limit is counted under."""

    subject: str
    roles: frozenset[str]
    #: ``api_key``, ``jwt``, ``oidc`` (a signed-in person) or ``address`` (no authentication:
    #: the client's address).
    via: str
    key_id: str | None = None
    #: The identity provider that vouches for ``subject`` (``oidc``: its issuer URL).
    issuer: str | None = None

    def accepted(self, roles: frozenset[str]) -> bool:
        return ADMIN in self.roles or not self.roles.isdisjoint(roles)

    @property
    def bucket(self) -> str:
        if self.via == "api_key":
            return f"key:{self.key_id}"
        if self.issuer is not None:
            return f"{self.via}:{self.issuer}#{self.subject}"
        return f"{self.via}:{self.subject}"


def principal_of(scope: MutableMapping[str, Any]) -> Principal | None:
    """The authenticated principal of a request, or None when authentication is off (or the
    route is public)."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None


#: Roles whose reads are not limited to their own records (reviewers review others' changes,
#: auditors read everything, the services deliver for everyone).
OVERSIGHT_ROLES = frozenset({REVIEWER, AUDITOR, ADMIN, SERVICE})


def own_records_only(principal: Principal | None) -> str | None:
    """The agent id whose records ``principal`` may read, or None when it may read every
    record: authentication off (no principal), or one of the oversight roles. An agent sees
    its own executions, change requests and audit events only."""
    if principal is None or not OVERSIGHT_ROLES.isdisjoint(principal.roles):
        return None
    return principal.subject
