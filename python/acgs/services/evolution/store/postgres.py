"""The PostgreSQL store (asyncpg), for several service processes sharing one database.

A transaction that holds a request starts with ``SELECT ... FOR UPDATE`` on its row: any other
transaction wanting the same request waits until the first commits and then reads what it
wrote. The primary key on (request_id, reviewer) makes a second approval by the same reviewer
impossible even outside that lock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from acgs.audit.outbox import POSTGRES, PostgresOutbox, postgres_append
from acgs.services.evolution.records import Approval, AuditEvent, EvolutionRecord, Status
from acgs.services.evolution.store import PRODUCER, OutboxSource, RequestNotFound

# Taken while creating the tables, so that processes starting together do not race on DDL.
_SCHEMA_LOCK = 0x41434753_45564F  # "ACGS" "EVO"

SCHEMA = """
CREATE TABLE IF NOT EXISTS evolution_requests (
    request_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    review_deadline DOUBLE PRECISION,
    valid_until DOUBLE PRECISION NOT NULL,
    version BIGINT NOT NULL,
    doc JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS evolution_requests_status ON evolution_requests (status, created_at);
CREATE INDEX IF NOT EXISTS evolution_requests_agent ON evolution_requests (agent_id, created_at);
CREATE TABLE IF NOT EXISTS evolution_approvals (
    request_id TEXT NOT NULL REFERENCES evolution_requests (request_id),
    reviewer TEXT NOT NULL,
    reason TEXT NOT NULL,
    approved_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE IF NOT EXISTS evolution_webhook_cursors (
    url TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);
"""

_COLUMNS = "request_id, agent_id, requested_by, status, created_at, updated_at, review_deadline, valid_until, version, doc"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=json.loads, schema="pg_catalog")


async def _approvals(conn: Any, request_id: str) -> list[Approval]:
    rows = await conn.fetch(
        "SELECT reviewer, reason, approved_at FROM evolution_approvals WHERE request_id = $1 ORDER BY approved_at, reviewer",
        request_id,
    )
    return [Approval(reviewer=r["reviewer"], reason=r["reason"], approved_at=r["approved_at"]) for r in rows]


async def _record(conn: Any, row: Any) -> EvolutionRecord:
    return EvolutionRecord.from_parts(
        request_id=row["request_id"],
        agent_id=row["agent_id"],
        requested_by=row["requested_by"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        review_deadline=row["review_deadline"],
        valid_until=row["valid_until"],
        version=row["version"],
        doc=row["doc"],
        approvals=await _approvals(conn, row["request_id"]),
    )


async def _adopt_legacy_outbox(conn: Any) -> None:
    """Moves the rows of the outbox table this database had before the shared outbox into it,
    under the same ids (webhook cursors point at them)."""
    if await conn.fetchval("SELECT to_regclass('evolution_audit_outbox')") is None:
        return
    await conn.execute(
        "INSERT INTO acgs_outbox (seq, producer, event, enqueued_at, attempts, last_error, delivered_at)"
        " SELECT id, $1, event::text, created_at, attempts, last_error, delivered_at FROM evolution_audit_outbox"
        " ORDER BY id ON CONFLICT (seq) DO NOTHING",
        PRODUCER,
    )
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('acgs_outbox', 'seq'), COALESCE((SELECT max(seq) FROM acgs_outbox), 0) + 1, false)"
    )
    await conn.execute("DROP TABLE evolution_audit_outbox")


class _Transaction:
    def __init__(self, conn: Any, record: EvolutionRecord) -> None:
        self._conn = conn
        self._record = record

    @property
    def record(self) -> EvolutionRecord:
        return self._record

    async def add_approval(self, approval: Approval) -> bool:
        status = await self._conn.execute(
            "INSERT INTO evolution_approvals (request_id, reviewer, reason, approved_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (request_id, reviewer) DO NOTHING",
            self._record.request_id,
            approval.reviewer,
            approval.reason,
            approval.approved_at,
        )
        added = str(status) == "INSERT 0 1"
        if added:
            self._record.approvals.append(approval)
        return added

    async def save(self, record: EvolutionRecord) -> EvolutionRecord:
        status = await self._conn.execute(
            "UPDATE evolution_requests SET status = $1, updated_at = $2, review_deadline = $3, valid_until = $4, "
            "version = version + 1, doc = $5 WHERE request_id = $6 AND version = $7",
            record.status.value,
            record.updated_at,
            record.review_deadline,
            record.valid_until,
            record.doc(),
            record.request_id,
            self._record.version,
        )
        if str(status) != "UPDATE 1":
            raise RuntimeError(f"evolution request {record.request_id} changed under its own lock")
        saved = record.copy()
        saved.version = self._record.version + 1
        self._record = saved
        return saved.copy()

    async def audit(self, event: AuditEvent) -> None:
        await postgres_append(self._conn, PRODUCER, [event], self._record.updated_at)


class PostgresStore(OutboxSource):
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._outbox = PostgresOutbox(self._require_pool, PRODUCER)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the evolution store is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.url, min_size=self._min_size, max_size=self._max_size, init=_init_connection
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(SCHEMA)
            await conn.execute(POSTGRES.ddl)
            await _adopt_legacy_outbox(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def insert(self, record: EvolutionRecord, events: Sequence[AuditEvent]) -> None:
        async with self._require_pool().acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO evolution_requests ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                record.request_id,
                record.agent_id,
                record.requested_by,
                record.status.value,
                record.created_at,
                record.updated_at,
                record.review_deadline,
                record.valid_until,
                record.version,
                record.doc(),
            )
            for a in record.approvals:
                await conn.execute(
                    "INSERT INTO evolution_approvals (request_id, reviewer, reason, approved_at) VALUES ($1, $2, $3, $4)",
                    record.request_id,
                    a.reviewer,
                    a.reason,
                    a.approved_at,
                )
            if events:
                await postgres_append(conn, PRODUCER, events, record.created_at)

    async def get(self, request_id: str) -> EvolutionRecord | None:
        async with self._require_pool().acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM evolution_requests WHERE request_id = $1", request_id)
            return None if row is None else await _record(conn, row)

    async def list_requests(
        self, *, status: Status | None, agent_id: str | None, limit: int, offset: int
    ) -> tuple[list[EvolutionRecord], int]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            params.append(status.value)
            where.append(f"status = ${len(params)}")
        if agent_id is not None:
            params.append(agent_id)
            where.append(f"agent_id = ${len(params)}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        n = len(params)
        async with self._require_pool().acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            total = await conn.fetchval(f"SELECT count(*) FROM evolution_requests{clause}", *params)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM evolution_requests{clause} "
                f"ORDER BY created_at DESC, request_id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
                *params,
                limit,
                offset,
            )
            return [await _record(conn, r) for r in rows], int(total)

    @asynccontextmanager
    async def locked(self, request_id: str) -> AsyncIterator[_Transaction]:
        async with self._require_pool().acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM evolution_requests WHERE request_id = $1 FOR UPDATE", request_id
            )
            if row is None:
                raise RequestNotFound(request_id)
            yield _Transaction(conn, await _record(conn, row))

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        async with self._require_pool().acquire() as conn:
            rows = await conn.fetch(
                "SELECT request_id FROM evolution_requests WHERE "
                "(status = 'pending' AND (review_deadline <= $1 OR valid_until <= $1)) "
                "OR (status = 'approved' AND valid_until <= $1) ORDER BY created_at LIMIT $2",
                now,
                limit,
            )
            return [str(r["request_id"]) for r in rows]

    async def webhook_cursor(self, url: str) -> int:
        async with self._require_pool().acquire() as conn:
            value = await conn.fetchval("SELECT last_id FROM evolution_webhook_cursors WHERE url = $1", url)
            return int(value) if value is not None else 0

    async def set_webhook_cursor(self, url: str, last_id: int) -> None:
        async with self._require_pool().acquire() as conn:
            await conn.execute(
                "INSERT INTO evolution_webhook_cursors (url, last_id) VALUES ($1, $2) "
                "ON CONFLICT (url) DO UPDATE SET last_id = GREATEST(evolution_webhook_cursors.last_id, EXCLUDED.last_id)",
                url,
                last_id,
            )
