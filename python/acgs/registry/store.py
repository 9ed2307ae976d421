"""Where agent records live: the :class:`AgentRegistry` protocol, :class:`StoredRegistry` (what
the backends share), one module per backend (``sqlite.py``, ``postgres.py``), and
:func:`open_registry` to pick one from a URL."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from acgs.registry.errors import RegistryError
from acgs.registry.records import AgentRecord, AgentUpdate, check_agent_id

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


class StoredRegistry:
    """The :class:`AgentRegistry` methods, over a backend's operations: ``_get(agent_id)``,
    ``_list()``, ``_add(record)``, ``_update(agent_id, change, now)``, ``_remove(agent_id)`` and
    ``_generation()``, each run by the backend's ``_call`` (in a thread on its own connection
    for SQLite, on a pooled connection it passes first for PostgreSQL), which turns the
    backend's faults into ``RegistryUnavailable``. Agent ids are checked here, before any
    backend sees them."""

    _get: Callable[..., Any]
    _list: Callable[..., Any]
    _add: Callable[..., Any]
    _update: Callable[..., Any]
    _remove: Callable[..., Any]
    _generation: Callable[..., Any]

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    async def get(self, agent_id: str) -> AgentRecord | None:
        result: AgentRecord | None = await self._call(self._get, check_agent_id(agent_id))
        return result

    async def list(self) -> builtins.list[AgentRecord]:
        result: builtins.list[AgentRecord] = await self._call(self._list)
        return result

    async def add(self, record: AgentRecord) -> AgentRecord:
        result: AgentRecord = await self._call(self._add, record)
        return result

    async def update(self, agent_id: str, change: AgentUpdate) -> AgentRecord:
        result: AgentRecord = await self._call(self._update, check_agent_id(agent_id), change, time.time())
        return result

    async def remove(self, agent_id: str) -> AgentRecord:
        result: AgentRecord = await self._call(self._remove, check_agent_id(agent_id))
        return result

    async def generation(self) -> int:
        result: int = await self._call(self._generation)
        return result

    async def close(self) -> None:
        return None


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
