"""The agent registry in PostgreSQL (asyncpg), shared by every node that names the same
database. Writes lock the row they change (``SELECT ... FOR UPDATE``) and bump the registry's
generation in the same transaction, so a reader that sees the new generation sees the write."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg

from acgs.registry.errors import AgentExists, AgentNotFound, RegistryError, RegistryUnavailable
from acgs.registry.records import AgentRecord, AgentUpdate, record_from_row
from acgs.registry.sqlite import agent_key, checked_row
from acgs.registry.store import COLUMNS, StoredRegistry

# Taken while creating the tables, so that processes starting together do not race on DDL.
_SCHEMA_LOCK = 0x41434753_414754  # "ACGS" "AGT"

SCHEMA = """
CREATE TABLE IF NOT EXISTS acgs_agents (
    agent_id TEXT PRIMARY KEY,
    agent_key TEXT NOT NULL UNIQUE,
    trust_level TEXT NOT NULL,
    tier TEXT,
    owner TEXT,
    attributes TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS acgs_agent_registry_state (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO acgs_agent_registry_state (id, generation) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
"""

_BUMP = "UPDATE acgs_agent_registry_state SET generation = generation + 1 WHERE id = 1"


def _params(record: AgentRecord) -> tuple[Any, ...]:
    return (
        record.trust_text, record.tier, record.owner, record.attributes_json,
        record.created_at, record.updated_at, record.disabled,
    )  # fmt: skip


class PostgresAgentRegistry(StoredRegistry):
    """Agents in PostgreSQL, through a small pool opened on first use (in the event loop that
    uses it)."""

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self.max_size = max_size
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def _open(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._lock is None or self._loop is not loop:
            self._lock = asyncio.Lock()
            self._pool = None
            self._loop = loop
        async with self._lock:
            if self._pool is None:
                pool = await asyncpg.create_pool(self.url, min_size=0, max_size=self.max_size)
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                        await conn.execute(SCHEMA)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            pool = await self._open()
            async with pool.acquire() as conn:
                return await fn(conn, *args)
        except RegistryError:
            raise
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise RegistryUnavailable(f"agent registry (PostgreSQL): {type(exc).__name__}: {exc}") from None

    @staticmethod
    async def _get(conn: Any, agent_id: str) -> AgentRecord | None:
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM acgs_agents WHERE agent_id = $1", agent_id)
        return None if row is None else checked_row(tuple(row))

    @staticmethod
    async def _list(conn: Any) -> builtins.list[AgentRecord]:
        rows = [tuple(row) for row in await conn.fetch(f"SELECT {COLUMNS} FROM acgs_agents ORDER BY agent_id")]
        # Checking every row costs tens of microseconds each: off the event loop, so a reload
        # of a large registry never stalls the requests being served.
        return await asyncio.to_thread(lambda: [r for r in map(checked_row, rows) if r is not None])

    @staticmethod
    async def _add(conn: Any, record: AgentRecord) -> AgentRecord:
        try:
            async with conn.transaction():
                await conn.execute(
                    f"INSERT INTO acgs_agents (agent_key, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    agent_key(record.agent_id), record.agent_id, *_params(record),
                )  # fmt: skip
                await conn.execute(_BUMP)
        except asyncpg.UniqueViolationError:
            raise AgentExists(f"an agent {record.agent_id!r} is already registered (ids are unique in any letter case)") from None
        return record

    @staticmethod
    async def _update(conn: Any, agent_id: str, change: AgentUpdate, now: float) -> AgentRecord:
        async with conn.transaction():
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM acgs_agents WHERE agent_id = $1 FOR UPDATE", agent_id)
            if row is None:
                raise AgentNotFound(f"no agent {agent_id!r} is registered")
            updated = change.apply(record_from_row(*tuple(row)), now)
            await conn.execute(
                "UPDATE acgs_agents SET trust_level = $1, tier = $2, owner = $3, attributes = $4, created_at = $5,"
                " updated_at = $6, disabled = $7 WHERE agent_id = $8",
                *_params(updated), agent_id,
            )  # fmt: skip
            await conn.execute(_BUMP)
        return updated

    @staticmethod
    async def _remove(conn: Any, agent_id: str) -> AgentRecord:
        async with conn.transaction():
            row = await conn.fetchrow(f"DELETE FROM acgs_agents WHERE agent_id = $1 RETURNING {COLUMNS}", agent_id)
            if row is None:
                raise AgentNotFound(f"no agent {agent_id!r} is registered")
            await conn.execute(_BUMP)
        return checked_row(tuple(row)) or AgentRecord(agent_id, trust_level=Decimal(0))

    @staticmethod
    async def _generation(conn: Any) -> int:
        value = await conn.fetchval("SELECT generation FROM acgs_agent_registry_state WHERE id = 1")
        return int(value or 0)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and self._loop is asyncio.get_running_loop():
            await pool.close()
