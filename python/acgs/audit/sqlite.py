"""The embedded audit store: one SQLite file in WAL mode with ``synchronous=FULL``.

Appends go through one writer thread that does group commit: every append queued while a
commit is in flight joins the next transaction, so many concurrent appends share one
``BEGIN IMMEDIATE ... COMMIT`` and one fsync. Each caller's future is resolved only after that
commit returned, i.e. after the WAL was synced: an acknowledged event survives a crash or a
power cut. The head is read inside the ``BEGIN IMMEDIATE`` transaction, which holds SQLite's
write lock, so writers in other processes (or other store objects on the same file) serialize
on it and cannot fork the chain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    idx INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    ts_us INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    decision_id TEXT,
    idempotency_key TEXT,
    payload BLOB NOT NULL,
    content_hash BLOB NOT NULL,
    chain_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_agent ON audit_events (agent_id, idx);
CREATE INDEX IF NOT EXISTS audit_events_type ON audit_events (event_type, idx);
CREATE INDEX IF NOT EXISTS audit_events_decision ON audit_events (decision_id) WHERE decision_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (ts_us);
-- Partial: most events carry no key, and they cost nothing here.
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_idempotency ON audit_events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cursors (
    name TEXT PRIMARY KEY,
    next_index INTEGER NOT NULL
);
"""

_EVENT_COLUMNS = "idx, event_id, ts_us, payload, content_hash, chain_hash"
#: The columns copied out of the payload, in ``Columns.derived`` order (see ``events.DERIVED``).
_DERIVED_COLUMNS = ", event_id, ts_us, event_type, agent_id, decision_id, idempotency_key"
_INSERT_HEAD = (
    "INSERT INTO audit_events (idx, event_id, ts_us, event_type, agent_id, decision_id, idempotency_key,"
    " payload, content_hash, chain_hash) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: Rows per INSERT statement. One multi-row statement per few hundred events instead of one
#: step per row: the writer thread gives up and retakes the GIL once per statement, not once
#: per row, so appends being prepared on the event loop no longer stall it row by row. (Older
#: SQLite builds allow 999 bound parameters per statement, newer ones 32766.)
_ROWS_PER_STATEMENT = 500 if sqlite3.sqlite_version_info >= (3, 32, 0) else 99
_statements: dict[int, str] = {}


def _insert_rows(conn: sqlite3.Connection, params: list[Any], rows: int) -> None:
    """Inserts ``rows`` rows whose parameters are ``params``, flat, ten per row."""
    for start in range(0, rows, _ROWS_PER_STATEMENT):
        count = min(_ROWS_PER_STATEMENT, rows - start)
        sql = _statements.get(count)
        if sql is None:
            sql = _statements[count] = _INSERT_HEAD + ", ".join([_ROW] * count)
        conn.execute(sql, params[start * 10 : (start + count) * 10])


class _Pending:
    """One queued append. An async caller waits on an asyncio future of its loop (resolved from
    the writer thread with one loop wake-up per group commit, not one per append); a blocking
    caller on a concurrent future."""

    __slots__ = ("events", "future", "loop")

    def __init__(
        self,
        events: Sequence[PreparedEvent],
        future: asyncio.Future[list[Appended]] | concurrent.futures.Future[list[Appended]],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.events = events
        self.future = future
        self.loop = loop


def _settle(items: list[tuple[_Pending, list[Appended] | BaseException]]) -> None:
    for pending, outcome in items:
        future = pending.future
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        index=row[0], event_id=row[1], ts_us=row[2], payload=bytes(row[3]),
        content_hash=bytes(row[4]), chain_hash=bytes(row[5]),
    )  # fmt: skip


class SQLiteAuditStore:
    """The audit log in one SQLite file. ``max_batch`` bounds the events of one group commit."""

    kind = "sqlite"

    def __init__(self, path: Path | str, *, max_batch: int = 4096, busy_timeout_ms: int = 60_000) -> None:
        self.path = Path(path)
        self.max_batch = max_batch
        self.busy_timeout_ms = busy_timeout_ms
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        # Guards the reader connections and counts the reads in flight. A read runs in a worker
        # thread that its caller cannot stop (a cancelled ``asyncio.to_thread`` leaves the thread
        # running), and closing a connection while another thread executes on it crashes the
        # sqlite3 module (SIGSEGV in CPython 3.11): close waits for those reads and holds new
        # ones back until it is done.
        self._readers_cond = threading.Condition()
        self._reads_in_flight = 0
        self._closing_readers = False
        #: Transactions committed and events they carried, for metrics.
        self.commits = 0
        self.committed_events = 0

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is synced at every commit, so a commit that returned is on disk.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_cond:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader connection, which ``close`` leaves open until the block ends."""
        with self._readers_cond:
            while self._closing_readers:
                self._readers_cond.wait()
            self._reads_in_flight += 1
        try:
            yield self._reader()
        finally:
            with self._readers_cond:
                self._reads_in_flight -= 1
                if not self._reads_in_flight:
                    self._readers_cond.notify_all()

    async def _read(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        args = tuple(params)

        def run() -> list[Any]:
            with self._reading() as conn:
                return conn.execute(sql, args).fetchall()

        return await asyncio.to_thread(run)

    # -- lifecycle ---------------------------------------------------------------------------

    def open_blocking(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.executescript(SCHEMA)
        finally:
            conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="acgs-audit-sqlite-writer", daemon=True)
        self._writer.start()

    async def open(self) -> None:
        await asyncio.to_thread(self.open_blocking)

    def close_blocking(self) -> None:
        writer = self._writer
        if writer is not None:
            self._queue.put(None)
            writer.join()
            self._writer = None
        # Reads still running (their callers may be gone: a cancelled task's read goes on in
        # its thread) finish on their connection first; reads that start meanwhile wait, then
        # open fresh connections.
        with self._readers_cond:
            self._closing_readers = True
            while self._reads_in_flight:
                self._readers_cond.wait()
            readers, self._readers = self._readers, []
            self._local = threading.local()
        try:
            for conn in readers:
                conn.close()
        finally:
            with self._readers_cond:
                self._closing_readers = False
                self._readers_cond.notify_all()

    async def close(self) -> None:
        await asyncio.to_thread(self.close_blocking)

    # -- appends -----------------------------------------------------------------------------

    def append_blocking(self, events: Sequence[PreparedEvent]) -> list[Appended]:
        """``append`` for a caller without an event loop."""
        if self._writer is None:
            raise RuntimeError("the audit store is not open")
        future: concurrent.futures.Future[list[Appended]] = concurrent.futures.Future()
        self._queue.put(_Pending(events, future, None))
        return future.result()

    async def append(self, events: Sequence[PreparedEvent]) -> list[Appended]:
        if not events:
            return []
        if self._writer is None:
            raise RuntimeError("the audit store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Appended]] = loop.create_future()
        self._queue.put(_Pending(events, future, loop))
        return await future

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                count = len(first.events)
                stop = False
                while count < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                    count += len(more.events)
                self._commit_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        outcomes: list[list[Appended] | BaseException]
        try:
            outcomes = list(self._commit(conn, [p.events for p in batch]))
        except Exception as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback after a failed audit commit")
            # A group shares one fate: none of its events were committed.
            outcomes = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop | None, list[tuple[_Pending, list[Appended] | BaseException]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending, outcome))
        for loop, items in by_loop.items():
            if loop is None:
                _settle(items)
            else:
                try:
                    loop.call_soon_threadsafe(_settle, items)
                except RuntimeError:
                    pass  # that loop is closed: nobody is waiting any more

    def _commit(self, conn: sqlite3.Connection, groups: list[Sequence[PreparedEvent]]) -> list[list[Appended]]:
        conn.execute("BEGIN IMMEDIATE")
        head = conn.execute("SELECT idx, chain_hash FROM audit_events ORDER BY idx DESC LIMIT 1").fetchone()
        index = head[0] + 1 if head else 0
        prev = bytes(head[1]) if head else GENESIS
        keys = [e.idempotency_key for g in groups for e in g if e.idempotency_key is not None]
        seen: dict[str, Appended] = self._existing(conn, keys) if keys else {}
        params: list[Any] = []
        rows = 0
        results: list[list[Appended]] = []
        hashes = core.event_hashes
        for group in groups:
            out: list[Appended] = []
            for e in group:
                if e.idempotency_key is not None and e.idempotency_key in seen:
                    out.append(seen[e.idempotency_key])
                    continue
                content, chain = hashes(prev, e.payload)
                params += (
                    index, e.event_id, e.ts_us, e.event_type, e.agent_id, e.decision_id, e.idempotency_key,
                    e.payload, content, chain,
                )  # fmt: skip
                appended = Appended(index, e.event_id, e.ts_us, content, chain)
                if e.idempotency_key is not None:
                    seen[e.idempotency_key] = Appended(index, e.event_id, e.ts_us, content, chain, duplicate=True)
                out.append(appended)
                prev = chain
                index += 1
                rows += 1
            results.append(out)
        _insert_rows(conn, params, rows)
        conn.execute("COMMIT")
        self.commits += 1
        self.committed_events += rows
        return results

    @staticmethod
    def _existing(conn: sqlite3.Connection, keys: list[str]) -> dict[str, Appended]:
        found: dict[str, Appended] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT idempotency_key, idx, event_id, ts_us, content_hash, chain_hash FROM audit_events"
                f" WHERE idempotency_key IN ({marks})",
                chunk,
            ):
                found[row[0]] = Appended(row[1], row[2], row[3], bytes(row[4]), bytes(row[5]), duplicate=True)
        return found

    # -- reads -------------------------------------------------------------------------------

    async def size(self) -> int:
        rows = await self._read("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events")
        return int(rows[0][0])

    async def get(self, event_id: str) -> StoredEvent | None:
        rows = await self._read(f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE event_id = ?", (event_id,))
        return _stored(rows[0]) if rows else None

    async def find(self, flt: EventFilter, *, after: int, limit: int) -> list[StoredEvent]:
        where = ["idx > ?"]
        params: list[Any] = [after]
        for column, value in (
            ("agent_id", flt.agent_id),
            ("event_type", flt.event_type),
            ("decision_id", flt.decision_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.since_us is not None:
            where.append("ts_us >= ?")
            params.append(flt.since_us)
        if flt.until_us is not None:
            where.append("ts_us < ?")
            params.append(flt.until_us)
        params.append(limit)
        rows = await self._read(
            f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY idx LIMIT ?", params
        )
        return [_stored(r) for r in rows]

    async def read(self, start: int, end: int) -> list[StoredEvent]:
        rows = await self._read(
            f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [_stored(r) for r in rows]

    async def read_columns(self, start: int, end: int, *, derived: bool = False) -> Columns:
        extra = _DERIVED_COLUMNS if derived else ""

        def run() -> Columns:
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT idx, payload, content_hash, chain_hash{extra} FROM audit_events WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (start, end),
                ).fetchall()
            if not rows:
                return Columns([], [], [], [], [] if derived else None)
            if derived:
                return Columns(
                    [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                    [tuple(r[4:]) for r in rows],
                )  # fmt: skip
            idx, payloads, contents, chains = zip(*rows, strict=True)
            return Columns(list(idx), list(payloads), list(contents), list(chains))

        return await asyncio.to_thread(run)

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = await self._read("SELECT size, root, note, created_us FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        return StoredCheckpoint(rows[0][0], bytes(rows[0][1]), rows[0][2], rows[0][3]) if rows else None

    async def checkpoints(self) -> list[StoredCheckpoint]:
        rows = await self._read("SELECT size, root, note, created_us FROM audit_checkpoints ORDER BY size")
        return [StoredCheckpoint(r[0], bytes(r[1]), r[2], r[3]) for r in rows]

    async def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        def run() -> None:
            conn = self._connect()
            try:
                conn.execute(
                    "INSERT OR IGNORE INTO audit_checkpoints (size, root, note, created_us) VALUES (?, ?, ?, ?)",
                    (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.created_us),
                )
            finally:
                conn.close()

        await asyncio.to_thread(run)

    async def cursor(self, name: str) -> int:
        rows = await self._read("SELECT next_index FROM audit_cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    async def advance_cursor(self, name: str, next_index: int) -> None:
        def run() -> None:
            conn = self._connect()
            try:
                conn.execute(
                    "INSERT INTO audit_cursors (name, next_index) VALUES (?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET next_index = MAX(next_index, excluded.next_index)",
                    (name, next_index),
                )
            finally:
                conn.close()

        await asyncio.to_thread(run)
