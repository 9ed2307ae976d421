"""The audit store on PostgreSQL (asyncpg), for several service processes writing one chain.

The chain's head (its size and last chain hash) is one row of ``audit_head``. Every append
transaction starts with ``SELECT ... FOR UPDATE`` on that row, so appends from all processes
serialize on it: each one reads the head another just committed, chains its events after it,
and moves the head in the same transaction. Within a process, appends queued while a
transaction is in flight share the next one (group commit). An append is acknowledged after
``COMMIT`` returned, which with PostgreSQL's default ``synchronous_commit = on`` means the WAL
record is flushed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from acgs import _acgs as core
from acgs.audit.events import (
    GENESIS,
    Appended,
    Columns,
    EventFilter,
    PreparedEvent,
    StoredCheckpoint,
    StoredEvent,
)

log = logging.getLogger("acgs.audit")

# Taken while creating the tables, so that processes starting together do not race on DDL.
_SCHEMA_LOCK = 0x41434753_415544  # "ACGS" "AUD"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    idx BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    ts_us BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    decision_id TEXT,
    idempotency_key TEXT,
    payload BYTEA NOT NULL,
    content_hash BYTEA NOT NULL,
    chain_hash BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_agent ON audit_events (agent_id, idx);
CREATE INDEX IF NOT EXISTS audit_events_type ON audit_events (event_type, idx);
CREATE INDEX IF NOT EXISTS audit_events_decision ON audit_events (decision_id) WHERE decision_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts_us);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_idempotency ON audit_events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    chain_hash BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_us BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cursors (
    name TEXT PRIMARY KEY,
    next_index BIGINT NOT NULL
);
"""

_COLUMNS = (
    "idx", "event_id", "ts_us", "event_type", "agent_id", "decision_id", "idempotency_key",
    "payload", "content_hash", "chain_hash",
)  # fmt: skip
_EVENT_COLUMNS = "idx, event_id, ts_us, payload, content_hash, chain_hash"
#: The columns copied out of the payload, in ``Columns.derived`` order (see ``events.DERIVED``).
_DERIVED_COLUMNS = ", event_id, ts_us, event_type, agent_id, decision_id, idempotency_key"


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        index=row["idx"], event_id=row["event_id"], ts_us=row["ts_us"], payload=bytes(row["payload"]),
        content_hash=bytes(row["content_hash"]), chain_hash=bytes(row["chain_hash"]),
    )  # fmt: skip


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(row["size"], bytes(row["root"]), row["note"], row["created_us"])


class _Pending:
    __slots__ = ("events", "future")

    def __init__(self, events: Sequence[PreparedEvent], future: asyncio.Future[list[Appended]]) -> None:
        self.events = events
        self.future = future


class PostgresAuditStore:
    """The audit log in PostgreSQL. ``max_batch`` bounds the events of one transaction."""

    kind = "postgresql"

    def __init__(self, url: str, *, max_batch: int = 4096, min_size: int = 1, max_size: int = 8) -> None:
        self.url = url
        self.max_batch = max_batch
        self.min_size = min_size
        self.max_size = max_size
        self._pool: Any = None
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        self.committed_events = 0

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the audit store is not open")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = await asyncpg.create_pool(self.url, min_size=self.min_size, max_size=self.max_size)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(SCHEMA)
            await conn.execute(
                "INSERT INTO audit_head (id, size, chain_hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING", GENESIS
            )
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="acgs-audit-postgres-writer")

    async def close(self) -> None:
        if self._writer is not None and self._queue is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- appends -----------------------------------------------------------------------------

    async def append(self, events: Sequence[PreparedEvent]) -> list[Appended]:
        if not events:
            return []
        if self._queue is None:
            raise RuntimeError("the audit store is not open")
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(events, future))
        return await future

    async def _write_loop(self) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            first = await q.get()
            if first is None:
                return
            batch = [first]
            count = len(first.events)
            stop = False
            while count < self.max_batch and not q.empty():
                more = q.get_nowait()
                if more is None:
                    stop = True
                    break
                batch.append(more)
                count += len(more.events)
            try:
                results = await self._commit([p.events for p in batch])
            except Exception as exc:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            else:
                for pending, result in zip(batch, results, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)
            if stop:
                return

    async def _commit(self, groups: list[Sequence[PreparedEvent]]) -> list[list[Appended]]:
        async with self.pool.acquire() as conn, conn.transaction():
            # Every writer in every process waits here for the one before it: no fork.
            head = await conn.fetchrow("SELECT size, chain_hash FROM audit_head WHERE id = 1 FOR UPDATE")
            index: int = head["size"]
            prev = bytes(head["chain_hash"])
            keys = [e.idempotency_key for g in groups for e in g if e.idempotency_key is not None]
            seen: dict[str, Appended] = {}
            if keys:
                for row in await conn.fetch(
                    "SELECT idempotency_key, idx, event_id, ts_us, content_hash, chain_hash FROM audit_events"
                    " WHERE idempotency_key = ANY($1::text[])",
                    keys,
                ):
                    seen[row["idempotency_key"]] = Appended(
                        row["idx"], row["event_id"], row["ts_us"], bytes(row["content_hash"]),
                        bytes(row["chain_hash"]), duplicate=True,
                    )  # fmt: skip
            rows: list[tuple[Any, ...]] = []
            results: list[list[Appended]] = []
            for group in groups:
                out: list[Appended] = []
                for e in group:
                    if e.idempotency_key is not None and e.idempotency_key in seen:
                        out.append(seen[e.idempotency_key])
                        continue
                    content, chain = core.event_hashes(prev, e.payload)
                    rows.append((
                        index, e.event_id, e.ts_us, e.event_type, e.agent_id, e.decision_id, e.idempotency_key,
                        e.payload, content, chain,
                    ))  # fmt: skip
                    out.append(Appended(index, e.event_id, e.ts_us, content, chain))
                    if e.idempotency_key is not None:
                        seen[e.idempotency_key] = Appended(index, e.event_id, e.ts_us, content, chain, duplicate=True)
                    prev = chain
                    index += 1
                results.append(out)
            if rows:
                await conn.copy_records_to_table("audit_events", records=rows, columns=_COLUMNS)
                await conn.execute("UPDATE audit_head SET size = $1, chain_hash = $2 WHERE id = 1", index, prev)
        self.commits += 1
        self.committed_events += len(rows)
        return results

    # -- reads -------------------------------------------------------------------------------

    async def size(self) -> int:
        value = await self.pool.fetchval("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events")
        return int(value)

    async def get(self, event_id: str) -> StoredEvent | None:
        row = await self.pool.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE event_id = $1", event_id)
        return _stored(row) if row is not None else None

    async def find(self, flt: EventFilter, *, after: int, limit: int) -> list[StoredEvent]:
        where = ["idx > $1"]
        params: list[Any] = [after]
        for column, value in (
            ("agent_id", flt.agent_id),
            ("event_type", flt.event_type),
            ("decision_id", flt.decision_id),
        ):
            if value is not None:
                params.append(value)
                where.append(f"{column} = ${len(params)}")
        if flt.since_us is not None:
            params.append(flt.since_us)
            where.append(f"ts_us >= ${len(params)}")
        if flt.until_us is not None:
            params.append(flt.until_us)
            where.append(f"ts_us < ${len(params)}")
        params.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY idx LIMIT ${len(params)}",
            *params,
        )
        return [_stored(r) for r in rows]

    async def read(self, start: int, end: int) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE idx >= $1 AND idx < $2 ORDER BY idx", start, end
        )
        return [_stored(r) for r in rows]

    async def read_columns(self, start: int, end: int, *, derived: bool = False) -> Columns:
        extra = _DERIVED_COLUMNS if derived else ""
        rows = await self.pool.fetch(
            f"SELECT idx, payload, content_hash, chain_hash{extra} FROM audit_events WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            start,
            end,
        )
        if not rows:
            return Columns([], [], [], [], [] if derived else None)
        if derived:
            return Columns(
                [r[0] for r in rows], [bytes(r[1]) for r in rows], [bytes(r[2]) for r in rows],
                [bytes(r[3]) for r in rows], [tuple(r.values())[4:] for r in rows],
            )  # fmt: skip
        idx, payloads, contents, chains = zip(*rows, strict=True)
        return Columns(list(idx), list(payloads), list(contents), list(chains))

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = await self.pool.fetchrow(
            "SELECT size, root, note, created_us FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
        )
        return _checkpoint(row) if row is not None else None

    async def checkpoints(self) -> list[StoredCheckpoint]:
        rows = await self.pool.fetch("SELECT size, root, note, created_us FROM audit_checkpoints ORDER BY size")
        return [_checkpoint(r) for r in rows]

    async def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        await self.pool.execute(
            "INSERT INTO audit_checkpoints (size, root, note, created_us) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (size) DO NOTHING",
            checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.created_us,
        )  # fmt: skip

    async def cursor(self, name: str) -> int:
        value = await self.pool.fetchval("SELECT next_index FROM audit_cursors WHERE name = $1", name)
        return int(value) if value is not None else 0

    async def advance_cursor(self, name: str, next_index: int) -> None:
        await self.pool.execute(
            "INSERT INTO audit_cursors (name, next_index) VALUES ($1, $2) ON CONFLICT (name)"
            " DO UPDATE SET next_index = GREATEST(audit_cursors.next_index, excluded.next_index)",
            name,
            next_index,
        )
