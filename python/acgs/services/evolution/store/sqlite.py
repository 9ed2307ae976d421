"""The SQLite store, the embedded default: one file in WAL mode.

Writes go through one connection on one thread and every write transaction starts with
``BEGIN IMMEDIATE``, which takes the database's write lock up front: a transaction that holds a
request is alone, within this process and across processes sharing the file. Reads use a second
connection, so they never see another coroutine's uncommitted work.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from acgs.audit.outbox import SqliteOutbox, sqlite_append, sqlite_create, sqlite_transaction
from acgs.services.evolution.records import Approval, AuditEvent, EvolutionRecord, Status
from acgs.services.evolution.store import PRODUCER, OutboxSource, RequestNotFound

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS evolution_requests (
    request_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    review_deadline REAL,
    valid_until REAL NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evolution_requests_status ON evolution_requests (status, created_at);
CREATE INDEX IF NOT EXISTS evolution_requests_agent ON evolution_requests (agent_id, created_at);
CREATE TABLE IF NOT EXISTS evolution_approvals (
    request_id TEXT NOT NULL REFERENCES evolution_requests (request_id),
    reviewer TEXT NOT NULL,
    reason TEXT NOT NULL,
    approved_at REAL NOT NULL,
    PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE IF NOT EXISTS evolution_webhook_cursors (
    url TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
"""

_COLUMNS = "request_id, agent_id, requested_by, status, created_at, updated_at, review_deadline, valid_until, version, doc"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _approvals(conn: sqlite3.Connection, request_id: str) -> list[Approval]:
    rows = conn.execute(
        "SELECT reviewer, reason, approved_at FROM evolution_approvals WHERE request_id = ? ORDER BY approved_at, reviewer",
        (request_id,),
    ).fetchall()
    return [Approval(reviewer=r[0], reason=r[1], approved_at=r[2]) for r in rows]


def _record(conn: sqlite3.Connection, row: Sequence[Any]) -> EvolutionRecord:
    return EvolutionRecord.from_parts(
        request_id=row[0],
        agent_id=row[1],
        requested_by=row[2],
        status=row[3],
        created_at=row[4],
        updated_at=row[5],
        review_deadline=row[6],
        valid_until=row[7],
        version=row[8],
        doc=json.loads(row[9]),
        approvals=_approvals(conn, row[0]),
    )


def _insert_event(conn: sqlite3.Connection, event: AuditEvent, now: float) -> None:
    sqlite_append(conn, PRODUCER, [event], now)


def _adopt_legacy_outbox(conn: sqlite3.Connection) -> None:
    """Moves the rows of the outbox table this database had before the shared outbox into it,
    under the same ids (webhook cursors point at them)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'evolution_audit_outbox'").fetchone() is None:
        return
    with sqlite_transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO acgs_outbox (seq, producer, event, enqueued_at, attempts, last_error, delivered_at)"
            " SELECT id, ?, event, created_at, attempts, last_error, delivered_at FROM evolution_audit_outbox ORDER BY id",
            (PRODUCER,),
        )
        conn.execute("DROP TABLE evolution_audit_outbox")


def _create(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    sqlite_create(conn)
    _adopt_legacy_outbox(conn)


class _Transaction:
    def __init__(self, store: SqliteStore, record: EvolutionRecord) -> None:
        self._store = store
        self._record = record

    @property
    def record(self) -> EvolutionRecord:
        return self._record

    async def add_approval(self, approval: Approval) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO evolution_approvals (request_id, reviewer, reason, approved_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (request_id, reviewer) DO NOTHING",
                (self._record.request_id, approval.reviewer, approval.reason, approval.approved_at),
            )
            return cur.rowcount == 1

        added = await self._store._on_writer(run)
        if added:
            self._record.approvals.append(approval)
        return added

    async def save(self, record: EvolutionRecord) -> EvolutionRecord:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE evolution_requests SET status = ?, updated_at = ?, review_deadline = ?, valid_until = ?, "
                "version = version + 1, doc = ? WHERE request_id = ? AND version = ?",
                (
                    record.status.value,
                    record.updated_at,
                    record.review_deadline,
                    record.valid_until,
                    _dumps(record.doc()),
                    record.request_id,
                    self._record.version,
                ),
            )
            if cur.rowcount != 1:
                raise RuntimeError(f"evolution request {record.request_id} changed under its own lock")

        await self._store._on_writer(run)
        saved = record.copy()
        saved.version = self._record.version + 1
        self._record = saved
        return saved.copy()

    async def audit(self, event: AuditEvent) -> None:
        now = self._record.updated_at
        await self._store._on_writer(lambda conn: _insert_event(conn, event, now))


class SqliteStore(OutboxSource):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="acgs-evolution-sqlite-w")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="acgs-evolution-sqlite-r")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # One writer connection, so one transaction at a time in this process; other
        # processes wait on SQLite's own lock (busy_timeout).
        self._write_lock = asyncio.Lock()
        self._outbox = SqliteOutbox(self._outbox_write, PRODUCER, keep_delivered=True)

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA foreign_keys = ON")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            # An approval acknowledged to a reviewer must survive a power cut, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
        return conn

    async def _on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._writer
        if conn is None:
            raise RuntimeError("the evolution store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, fn, conn)

    async def _outbox_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """The outbox's statements, on the writer between the store's own transactions."""

        def run(conn: sqlite3.Connection) -> T:
            if conn.in_transaction:  # left open by a cancelled caller; never commit its work
                conn.execute("ROLLBACK")
            return fn(conn)

        async with self._write_lock:
            return await asyncio.shield(self._on_writer(run))

    async def _on_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader
        if conn is None:
            raise RuntimeError("the evolution store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._reader_thread, fn, conn)

    # -- EvolutionStore ---------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._writer_thread, self._connect, False)
        await self._on_writer(_create)
        self._reader = await loop.run_in_executor(self._reader_thread, self._connect, True)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(self._writer_thread, self._writer.close)
            self._writer = None
        if self._reader is not None:
            await loop.run_in_executor(self._reader_thread, self._reader.close)
            self._reader = None
        self._writer_thread.shutdown(wait=False)
        self._reader_thread.shutdown(wait=False)

    async def insert(self, record: EvolutionRecord, events: Sequence[AuditEvent]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                conn.execute(
                    f"INSERT INTO evolution_requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.request_id,
                        record.agent_id,
                        record.requested_by,
                        record.status.value,
                        record.created_at,
                        record.updated_at,
                        record.review_deadline,
                        record.valid_until,
                        record.version,
                        _dumps(record.doc()),
                    ),
                )
                for a in record.approvals:
                    conn.execute(
                        "INSERT INTO evolution_approvals (request_id, reviewer, reason, approved_at) VALUES (?, ?, ?, ?)",
                        (record.request_id, a.reviewer, a.reason, a.approved_at),
                    )
                for event in events:
                    _insert_event(conn, event, record.created_at)

        async with self._write_lock:
            await asyncio.shield(self._on_writer(run))

    async def get(self, request_id: str) -> EvolutionRecord | None:
        def run(conn: sqlite3.Connection) -> EvolutionRecord | None:
            conn.execute("BEGIN")
            try:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM evolution_requests WHERE request_id = ?", (request_id,)
                ).fetchone()
                return None if row is None else _record(conn, row)
            finally:
                conn.execute("COMMIT")

        return await self._on_reader(run)

    async def list_requests(
        self, *, status: Status | None, agent_id: str | None, limit: int, offset: int
    ) -> tuple[list[EvolutionRecord], int]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if agent_id is not None:
            where.append("agent_id = ?")
            params.append(agent_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        def run(conn: sqlite3.Connection) -> tuple[list[EvolutionRecord], int]:
            # One read transaction, so the page and the total describe the same snapshot.
            conn.execute("BEGIN")
            try:
                total = conn.execute(f"SELECT count(*) FROM evolution_requests{clause}", params).fetchone()[0]
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM evolution_requests{clause} "
                    "ORDER BY created_at DESC, request_id DESC LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                ).fetchall()
                return [_record(conn, r) for r in rows], int(total)
            finally:
                conn.execute("COMMIT")

        return await self._on_reader(run)

    @asynccontextmanager
    async def locked(self, request_id: str) -> AsyncIterator[_Transaction]:
        def begin(conn: sqlite3.Connection) -> EvolutionRecord:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(f"SELECT {_COLUMNS} FROM evolution_requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise RequestNotFound(request_id)
            return _record(conn, row)

        def end(conn: sqlite3.Connection, commit: bool) -> None:
            if conn.in_transaction:
                conn.execute("COMMIT" if commit else "ROLLBACK")

        async with self._write_lock:
            record = await asyncio.shield(self._on_writer(begin))
            try:
                yield _Transaction(self, record)
            except BaseException:
                await asyncio.shield(self._on_writer(lambda conn: end(conn, False)))
                raise
            await asyncio.shield(self._on_writer(lambda conn: end(conn, True)))

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT request_id FROM evolution_requests WHERE "
                "(status = 'pending' AND (review_deadline <= ? OR valid_until <= ?)) "
                "OR (status = 'approved' AND valid_until <= ?) ORDER BY created_at LIMIT ?",
                (now, now, now, limit),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._on_reader(run)

    async def webhook_cursor(self, url: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT last_id FROM evolution_webhook_cursors WHERE url = ?", (url,)).fetchone()
            return int(row[0]) if row else 0

        return await self._on_reader(run)

    async def set_webhook_cursor(self, url: str, last_id: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                conn.execute(
                    "INSERT INTO evolution_webhook_cursors (url, last_id) VALUES (?, ?) "
                    "ON CONFLICT (url) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                    (url, last_id),
                )

        async with self._write_lock:
            await asyncio.shield(self._on_writer(run))
