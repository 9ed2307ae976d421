"""Errors of the agent registry, under the project's one root (:class:`acgs.errors.AcgsError`)."""

from __future__ import annotations

from acgs.errors import AcgsError, InvalidInputError


class RegistryError(AcgsError):
    """A registry operation was refused or the registry cannot be used."""

    code = "registry_error"


class InvalidAgentError(InvalidInputError):
    """A field of an agent record is malformed; ``field`` names it (``agent_id``,
    ``trust_level``, ``attributes.limits``...)."""

    code = "invalid_agent"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AgentNotFound(RegistryError, LookupError):
    """No agent with that id is registered."""

    code = "agent_not_found"


class AgentExists(RegistryError):
    """An agent with that id (or the same id in other letter case) is already registered."""

    code = "agent_exists"


class RegistryUnavailable(RegistryError):
    """The registry store cannot be read or written (and, for the cached reader, has never
    been read since start)."""

    code = "registry_unavailable"
