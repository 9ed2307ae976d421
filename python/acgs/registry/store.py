"""Where agent records live: the :class:`AgentRegistry` protocol, one module per backend
(``sqlite.py``, ``postgres.py``), and :func:`open_registry` to pick one from a URL."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Protocol

from acgs.registry.errors import RegistryError
from acgs.registry.records import AgentRecord, AgentUpdate

#: The default store's file name under the data directory.
DEFAULT_FILE = "agents.sqlite3"

#: Columns in the order every query selects them (``record_from_row`` takes them so).
COLUMNS = "agent_id, trust_level, tier, owner, attributes, created_at, updated_at, disabled"


class AgentRegistry(Protocol):
    """The agent registry. Reads and writes are checked: a malformed record is never stored,
    and a stored row that does not check is never returned (it is logged and skipped)."""

    async def get(self, agent_id: str) -> AgentRecord | None:
        """The record of ``agent_id`` (disabled or not), or None."""
        ...

    async def list(self) -> builtins.list[AgentRecord]:
        """Every record, ordered by agent id."""
        ...

    async def add(self, record: AgentRecord) -> AgentRecord:
        """Stores a new record; :class:`AgentExists` if the id, in any letter case, is taken."""
        ...

    async def update(self, agent_id: str, change: AgentUpdate) -> AgentRecord:
        """Applies ``change`` atomically and returns the new record; :class:`AgentNotFound`."""
        ...

    async def remove(self, agent_id: str) -> AgentRecord:
        """Deletes the record and returns what it was; :class:`AgentNotFound`."""
        ...

    async def generation(self) -> int:
        """A number every write increases: readers reload only when it moved."""
        ...

    async def close(self) -> None: ...


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DEFAULT_FILE}"


def open_registry(url: str) -> AgentRegistry:
    """``sqlite:///path`` or ``postgresql://...`` (``postgres://`` too)."""
    if url.startswith("sqlite:///"):
        from acgs.registry.sqlite import SqliteAgentRegistry

        return SqliteAgentRegistry(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from acgs.registry.postgres import PostgresAgentRegistry

        return PostgresAgentRegistry(url)
    raise RegistryError(f"agent registry {url!r}: use sqlite:///path or postgresql://...")
