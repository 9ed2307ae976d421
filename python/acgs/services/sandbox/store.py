"""The sandbox database (SQLite): executions from request to result, and the audit outbox.

An execution row is written when the request arrives and updated as it runs, so after a
crash the next controller finds the runs that never finished and closes them as errors.
The outbox holds audit events until something (the audit engine) takes them; events are fitted
to the audit log's limits before they are queued. An event the audit log refuses moves to
``audit_dead_letters`` and its outbox row, in the same place, carries the ``delivery_rejected``
event that stands for it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from acgs.audit.delivery import fit_event
from acgs.services.sandbox.audit import AuditEvent

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
CREATE TABLE IF NOT EXISTS audit_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    decision_id  TEXT NOT NULL,
    event        TEXT NOT NULL,
    delivered_at REAL
);
CREATE TABLE IF NOT EXISTS audit_dead_letters (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    rejected_at  REAL NOT NULL,
    decision_id  TEXT NOT NULL,
    event        TEXT NOT NULL,
    reason       TEXT NOT NULL
);
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

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

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

    def update(self, record: dict[str, Any], *, started: bool = False) -> None:
        with self._tx() as db:
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
            rows = db.execute(
                "SELECT seq, event FROM audit_outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(seq), json.loads(ev)) for seq, ev in rows]

    def mark_delivered(self, seqs: list[int]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE audit_outbox SET delivered_at = ? WHERE seq = ?", [(time.time(), s) for s in seqs])

    def dead_letter(self, seq: int, reason: str, replacement: dict[str, Any]) -> None:
        """Moves the refused event at ``seq`` to ``audit_dead_letters`` and puts ``replacement``
        (its ``delivery_rejected`` event) in its place, pending, in one transaction."""
        with self._tx() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR IGNORE INTO audit_dead_letters (seq, event_id, created_at, rejected_at, decision_id, event, reason)"
                    " SELECT seq, event_id, created_at, ?, decision_id, event, ? FROM audit_outbox WHERE seq = ?",
                    (time.time(), reason, seq),
                )
                db.execute("UPDATE audit_outbox SET event = ? WHERE seq = ?", (json.dumps(replacement), seq))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, rejected_at, reason, event FROM audit_dead_letters ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"seq": r[0], "rejected_at": r[1], "reason": r[2], "event": json.loads(r[3])} for r in rows]

    def events_for(self, decision_id: str) -> list[AuditEvent]:
        with self._tx() as db:
            rows = db.execute("SELECT event FROM audit_outbox WHERE decision_id = ? ORDER BY seq", (decision_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]


def _insert_event(db: sqlite3.Connection, event: AuditEvent) -> None:
    fitted = fit_event(event)
    db.execute(
        "INSERT INTO audit_outbox (event_id, created_at, decision_id, event) VALUES (?, ?, ?, ?)",
        (f"evt_{uuid.uuid4().hex}", time.time(), str(event.get("decision_id") or ""), json.dumps(fitted)),
    )


class OutboxAuditSink:
    """:class:`~acgs.services.sandbox.audit.AuditSink` into the database's ``audit_outbox``."""

    def __init__(self, store: ExecutionStore) -> None:
        self.store = store

    def record(self, event: AuditEvent) -> None:
        self.store.record_event(event)
