"""The agent registry: what ACGS may trust each agent with (trust level, tier, owner,
attributes), kept by administrators, in SQLite by default or PostgreSQL, and read by the
services from memory. See README.md beside this file."""

from __future__ import annotations

from acgs.registry.cache import CachedRegistry
from acgs.registry.errors import AgentExists, AgentNotFound, InvalidAgentError, RegistryError, RegistryUnavailable
from acgs.registry.records import (
    UNSET,
    AgentRecord,
    AgentUpdate,
    check_agent_id,
    check_attributes,
    check_trust_level,
    dumps_exact,
    loads_exact,
    new_agent,
    trust_text,
)
from acgs.registry.settings import RegistrySettings
from acgs.registry.store import AgentRegistry, default_url, open_registry

__all__ = [
    "UNSET",
    "AgentExists",
    "AgentNotFound",
    "AgentRecord",
    "AgentRegistry",
    "AgentUpdate",
    "CachedRegistry",
    "InvalidAgentError",
    "RegistryError",
    "RegistrySettings",
    "RegistryUnavailable",
    "check_agent_id",
    "check_attributes",
    "check_trust_level",
    "default_url",
    "dumps_exact",
    "loads_exact",
    "new_agent",
    "open_registry",
    "trust_text",
]
