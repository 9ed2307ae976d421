"""The agent registry in one SQLite file (default: ``agents.sqlite3`` under the data
directory), created with its directory on first use. Each operation opens its own connection
in a worker thread; writes take the database's write lock first (``BEGIN IMMEDIATE``), so a
read-modify-write never interleaves with another process's."""

from __future__ import annotations

import asyncio
import builtins
import logging
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from acgs.registry.errors import AgentExists, AgentNotFound, InvalidAgentError, RegistryUnavailable
from acgs.registry.records import AgentRecord, AgentUpdate, record_from_row
from acgs.registry.store import COLUMNS, StoredRegistry

log = logging.getLogger("acgs.registry")

SCHEMA = """
CREATE TABLE IF NOT EXISTS acgs_agents (
    agent_id TEXT PRIMARY KEY,
    agent_key TEXT NOT NULL UNIQUE,
    trust_level TEXT NOT NULL,
    tier TEXT,
    owner TEXT,
    attributes TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS acgs_agent_registry_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO acgs_agent_registry_state (id, generation) VALUES (1, 0);
"""


def agent_key(agent_id: str) -> str:
    """The unique key of an id: ids are ASCII, so ASCII lower case makes ``Agent-1`` and
    ``agent-1`` one agent, which a person reading a list would take them for."""
    return agent_id.lower()


def checked_row(row: tuple[Any, ...] | Any) -> AgentRecord | None:
    """A row as a record, or None (logged) when it no longer checks."""
    try:
        return record_from_row(*row)
    except (InvalidAgentError, TypeError, ValueError) as exc:
        log.error("agent registry: skipping the malformed stored record %r: %s", str(row[0])[:140], exc)
        return None


def _params(record: AgentRecord) -> tuple[Any, ...]:
    return (
        record.trust_text, record.tier, record.owner, record.attributes_json,
        record.created_at, record.updated_at, record.disabled,
    )  # fmt: skip


class SqliteAgentRegistry(StoredRegistry):
    """Agents in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            if not self._ready:
                conn.executescript(SCHEMA)
                self._ready = True
        except (OSError, sqlite3.Error) as exc:
            raise RegistryUnavailable(f"agent registry {self.path}: {exc}") from None
        return conn

    def _get(self, agent_id: str) -> AgentRecord | None:
        conn = self._connect()
        try:
            row = conn.execute(f"SELECT {COLUMNS} FROM acgs_agents WHERE agent_id = ?", (agent_id,)).fetchone()
        finally:
            conn.close()
        return None if row is None else checked_row(row)

    def _list(self) -> builtins.list[AgentRecord]:
        conn = self._connect()
        try:
            rows = conn.execute(f"SELECT {COLUMNS} FROM acgs_agents ORDER BY agent_id").fetchall()
        finally:
            conn.close()
        return [r for r in map(checked_row, rows) if r is not None]

    def _add(self, record: AgentRecord) -> AgentRecord:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"INSERT INTO acgs_agents (agent_key, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (agent_key(record.agent_id), record.agent_id, *_params(record)),
                )
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                raise AgentExists(f"an agent {record.agent_id!r} is already registered (ids are unique in any letter case)") from None
            conn.execute("UPDATE acgs_agent_registry_state SET generation = generation + 1 WHERE id = 1")
            conn.execute("COMMIT")
        finally:
            conn.close()
        return record

    def _update(self, agent_id: str, change: AgentUpdate, now: float) -> AgentRecord:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(f"SELECT {COLUMNS} FROM acgs_agents WHERE agent_id = ?", (agent_id,)).fetchone()
                if row is None:
                    raise AgentNotFound(f"no agent {agent_id!r} is registered")
                current = record_from_row(*row)
                updated = change.apply(current, now)
                conn.execute(
                    "UPDATE acgs_agents SET trust_level = ?, tier = ?, owner = ?, attributes = ?, created_at = ?,"
                    " updated_at = ?, disabled = ? WHERE agent_id = ?",
                    (*_params(updated), agent_id),
                )
                conn.execute("UPDATE acgs_agent_registry_state SET generation = generation + 1 WHERE id = 1")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()
        return updated

    def _remove(self, agent_id: str) -> AgentRecord:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(f"SELECT {COLUMNS} FROM acgs_agents WHERE agent_id = ?", (agent_id,)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise AgentNotFound(f"no agent {agent_id!r} is registered")
            conn.execute("DELETE FROM acgs_agents WHERE agent_id = ?", (agent_id,))
            conn.execute("UPDATE acgs_agent_registry_state SET generation = generation + 1 WHERE id = 1")
            conn.execute("COMMIT")
        finally:
            conn.close()
        # A malformed row is still removed; what it was is then reported as far as it reads.
        return checked_row(row) or AgentRecord(str(row[0]), trust_level=Decimal(0))

    def _generation(self) -> int:
        conn = self._connect()
        try:
            row = conn.execute("SELECT generation FROM acgs_agent_registry_state WHERE id = 1").fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"agent registry {self.path}: {exc}") from None

