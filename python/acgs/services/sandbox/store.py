"""The sandbox database (SQLite): executions from request to result, and the audit outbox.

An execution row is written when the request arrives and updated as it runs, so after a
crash the next controller finds the runs that never finished and closes them as errors.
The outbox is ACGS's one audit outbox (``acgs.audit.outbox``) in this database: events are
fitted to the audit log's limits and appended on the store's connection, and the one
``OutboxRelay`` delivers them (``store.outbox`` is its source)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from acgs.audit.delivery import fit_event
from acgs.audit.outbox import SqliteOutbox, sqlite_append, sqlite_create, sqlite_dead_letters, sqlite_pending
from acgs.services.sandbox.audit import AuditEvent

T = TypeVar("T")
PRODUCER = "sandbox"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    decision_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    runtime      TEXT,
    created_at   REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    request      TEXT NOT NULL,
    record       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_agent ON executions (agent_id, created_at);
CREATE INDEX IF NOT EXISTS executions_status ON executions (status);
CREATE INDEX IF NOT EXISTS executions_decision ON executions (decision_id);
"""

UNFINISHED = ("queued", "running")


class ExecutionStore:
    """One connection shared by the controller's threads, serialised by a lock (SQLite
    writes are serial anyway, and each statement here is small)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._tx() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            sqlite_create(db)
            _adopt_legacy_outbox(db)
        #: The audit outbox as the relay's source (statements run off the event loop).
        self.outbox = SqliteOutbox(self._run_async, PRODUCER, keep_delivered=True)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return fn(self._db)

    async def _run_async(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._call, fn)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, record: dict[str, Any], request: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO executions (id, agent_id, decision_id, status, runtime, created_at, request, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["execution_id"],
                    record["agent_id"],
                    record["decision_id"],
                    record["status"],
                    record.get("runtime"),
                    record["created_at"],
                    json.dumps(request),
                    json.dumps(record),
                ),
            )

    def update(self, record: dict[str, Any], *, started: bool = False, event: AuditEvent | None = None) -> None:
        """Writes the execution's state; with ``event``, appends it to the outbox in the same
        transaction (the final state is never recorded without its audit event)."""
        with self._tx() as db:
            if event is not None:
                db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "UPDATE executions SET status = ?, runtime = ?, record = ?, finished_at = ?,"
                    " started_at = CASE WHEN ? THEN ? ELSE started_at END WHERE id = ?",
                    (
                        record["status"],
                        record.get("runtime"),
                        json.dumps(record),
                        record.get("finished_at"),
                        started,
                        time.time(),
                        record["execution_id"],
                    ),
                )
                if event is not None:
                    _insert_event(db, event)
                    db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def has_decision(self, decision_id: str) -> bool:
        """Whether a run is already filed under ``decision_id``."""
        with self._tx() as db:
            return db.execute("SELECT 1 FROM executions WHERE decision_id = ? LIMIT 1", (decision_id,)).fetchone() is not None

    def get(self, execution_id: str) -> dict[str, Any] | None:
        with self._tx() as db:
            row = db.execute("SELECT record FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def recent(self, agent_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self._tx() as db:
            if agent_id is None:
                rows = db.execute("SELECT record FROM executions ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = db.execute(
                    "SELECT record FROM executions WHERE agent_id = ? ORDER BY created_at DESC LIMIT ?", (agent_id, limit)
                ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def unfinished(self) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT record FROM executions WHERE status IN (?, ?) ORDER BY created_at", UNFINISHED
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- audit outbox ------------------------------------------------------------------------

    def record_event(self, event: AuditEvent) -> None:
        with self._tx() as db:
            _insert_event(db, event)

    def pending_events(self, limit: int = 100) -> list[tuple[int, AuditEvent]]:
        with self._tx() as db:
            return sqlite_pending(db, limit)  # type: ignore[return-value]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._tx() as db:
            return sqlite_dead_letters(db, limit)

    def events_for(self, decision_id: str) -> list[AuditEvent]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT event FROM acgs_outbox WHERE producer = ? AND json_extract(event, '$.decision_id') = ? ORDER BY seq",
                (PRODUCER, decision_id),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]


def _insert_event(db: sqlite3.Connection, event: AuditEvent) -> None:
    sqlite_append(db, PRODUCER, [fit_event(event)])


def _adopt_legacy_outbox(db: sqlite3.Connection) -> None:
    """Moves the rows of the outbox tables this database had before the shared outbox into it
    (same seq, delivered or not, dead letters with the stand-in that replaced them)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_outbox'").fetchone() is None:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "INSERT OR IGNORE INTO acgs_outbox (seq, producer, event, enqueued_at, delivered_at)"
            " SELECT seq, ?, event, created_at, delivered_at FROM audit_outbox ORDER BY seq",
            (PRODUCER,),
        )
        db.execute(
            "INSERT OR IGNORE INTO acgs_dead_letters (seq, producer, event, reason, replacement, at)"
            " SELECT d.seq, ?, d.event, d.reason, o.event, d.rejected_at FROM audit_dead_letters d"
            " JOIN audit_outbox o ON o.seq = d.seq",
            (PRODUCER,),
        )
        db.execute("DROP TABLE IF EXISTS audit_dead_letters")
        db.execute("DROP TABLE audit_outbox")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class OutboxAuditSink:
    """:class:`~acgs.services.sandbox.audit.AuditSink` into the database's audit outbox
    (``acgs_outbox``, see ``acgs.audit.outbox``)."""

    def __init__(self, store: ExecutionStore) -> None:
        self.store = store

    def record(self, event: AuditEvent) -> None:
        self.store.record_event(event)
