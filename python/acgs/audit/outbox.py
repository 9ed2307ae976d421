"""The audit outbox every producer shares (policy decision log, sandbox, evolution) and the one
relay that delivers it to the audit log.

The outbox is two tables, the same in SQLite and PostgreSQL: ``acgs_outbox`` holds events in
order (``seq``) until the audit log acknowledged them, ``acgs_dead_letters`` the events the audit
log refused, each with the ``delivery_rejected`` event that took its place. A store that must
write an event in the same transaction as its own state change (an execution row, a change
request transition) creates these tables in its own database and appends with ``SQLITE`` or
``POSTGRES`` (the statements live here and nowhere else); the decision log, which has no
state of its own, gets a file of its own (``SqliteOutbox.open``).

``OutboxRelay`` drains an outbox in order and in batches into a sink (the audit service over
HTTP, or an audit log in process). An event is marked delivered only after the sink
acknowledged it, so delivery is at least once (events that carry ``metadata.idempotency_key``
are stored once however often they arrive). A transient failure is retried with exponential
backoff, nothing behind it overtakes it. A refusal of the event itself (``is_rejection``) moves
it to the dead letters and puts its ``delivery_rejected`` event in the same place of the order,
in one transaction; delivery goes on behind it. The relay is a coroutine (``run``) for asyncio
callers and runs on a thread of its own (``start_thread``) for threaded ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import inspect
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from acgs.audit.delivery import DELIVERY_REJECTED, delivered_before, is_rejection, rejection_event

log = logging.getLogger("acgs.audit")

T = TypeVar("T")
Event = Mapping[str, Any]

#: Longest ``last_error`` / dead-letter reason kept.
_MAX_ERROR = 2000
#: PostgreSQL advisory lock held by an appending transaction until it commits, so ``seq`` order
#: is commit order (a sequence alone hands out numbers in start order: a relay reading pending
#: rows could deliver a later event before an earlier one still being committed).
_PG_APPEND_LOCK = 0x41434753_4F5458  # "ACGS" "OTX"


@dataclass(frozen=True, slots=True)
class Dialect:
    """The outbox's DDL and statements for one SQL dialect."""

    name: str
    ddl: str
    append: str
    pending: str
    depth: str
    delivered: str
    delete_delivered: str
    failed: str
    move_dead: str
    replace: str
    entries: str
    entries_pending: str
    dead_letters: str


SQLITE = Dialect(
    name="sqlite",
    ddl="""
CREATE TABLE IF NOT EXISTS acgs_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    producer     TEXT NOT NULL,
    event        TEXT NOT NULL,
    enqueued_at  REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    delivered_at REAL
);
CREATE TABLE IF NOT EXISTS acgs_dead_letters (
    seq          INTEGER PRIMARY KEY,
    producer     TEXT NOT NULL,
    event        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    replacement  TEXT NOT NULL,
    at           REAL NOT NULL
);
""",
    append="INSERT INTO acgs_outbox (producer, event, enqueued_at) VALUES (?, ?, ?)",
    pending="SELECT seq, event FROM acgs_outbox WHERE seq > ? AND delivered_at IS NULL ORDER BY seq LIMIT ?",
    depth="SELECT count(*) FROM acgs_outbox WHERE seq > ? AND delivered_at IS NULL",
    # Delivery is in seq order and appends are serial (SQLite has one writer), so the rows a
    # relay settles are every pending row between the first and the last it delivered.
    delivered="UPDATE acgs_outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
    " WHERE seq BETWEEN ? AND ? AND delivered_at IS NULL",
    delete_delivered="DELETE FROM acgs_outbox WHERE seq BETWEEN ? AND ?",
    failed="UPDATE acgs_outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
    move_dead="INSERT INTO acgs_dead_letters (seq, producer, event, reason, replacement, at)"
    " SELECT seq, producer, event, ?, ?, ? FROM acgs_outbox WHERE seq = ? ON CONFLICT (seq) DO NOTHING",
    replace="UPDATE acgs_outbox SET event = ?, attempts = attempts + 1, last_error = ? WHERE seq = ?",
    entries="SELECT seq, event, enqueued_at, delivered_at, attempts, last_error FROM acgs_outbox"
    " WHERE seq > ? ORDER BY seq LIMIT ?",
    entries_pending="SELECT seq, event, enqueued_at, delivered_at, attempts, last_error FROM acgs_outbox"
    " WHERE seq > ? AND delivered_at IS NULL ORDER BY seq LIMIT ?",
    dead_letters="SELECT seq, producer, event, reason, replacement, at FROM acgs_dead_letters ORDER BY seq DESC LIMIT ?",
)

POSTGRES = Dialect(
    name="postgresql",
    ddl="""
CREATE TABLE IF NOT EXISTS acgs_outbox (
    seq          BIGSERIAL PRIMARY KEY,
    producer     TEXT NOT NULL,
    event        TEXT NOT NULL,
    enqueued_at  DOUBLE PRECISION NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    delivered_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS acgs_dead_letters (
    seq          BIGINT PRIMARY KEY,
    producer     TEXT NOT NULL,
    event        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    replacement  TEXT NOT NULL,
    at           DOUBLE PRECISION NOT NULL
);
""",
    append="INSERT INTO acgs_outbox (producer, event, enqueued_at) VALUES ($1, $2, $3)",
    pending="SELECT seq, event FROM acgs_outbox WHERE seq > $1 AND delivered_at IS NULL ORDER BY seq LIMIT $2",
    depth="SELECT count(*) FROM acgs_outbox WHERE seq > $1 AND delivered_at IS NULL",
    delivered="UPDATE acgs_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL"
    " WHERE seq = ANY($2::bigint[]) AND delivered_at IS NULL",
    delete_delivered="DELETE FROM acgs_outbox WHERE seq = ANY($1::bigint[])",
    failed="UPDATE acgs_outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = ANY($2::bigint[])",
    move_dead="INSERT INTO acgs_dead_letters (seq, producer, event, reason, replacement, at)"
    " SELECT seq, producer, event, $1, $2, $3 FROM acgs_outbox WHERE seq = $4 ON CONFLICT (seq) DO NOTHING",
    replace="UPDATE acgs_outbox SET event = $1, attempts = attempts + 1, last_error = $2 WHERE seq = $3",
    entries="SELECT seq, event, enqueued_at, delivered_at, attempts, last_error FROM acgs_outbox"
    " WHERE seq > $1 ORDER BY seq LIMIT $2",
    entries_pending="SELECT seq, event, enqueued_at, delivered_at, attempts, last_error FROM acgs_outbox"
    " WHERE seq > $1 AND delivered_at IS NULL ORDER BY seq LIMIT $2",
    dead_letters="SELECT seq, producer, event, reason, replacement, at FROM acgs_dead_letters ORDER BY seq DESC LIMIT $1",
)


def dumps(event: Event) -> str:
    """The JSON text an outbox row holds."""
    return orjson.dumps(event).decode()


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "\u2026"


@dataclass(frozen=True, slots=True)
class Entry:
    """One outbox row, for readers that want more than the relay does (webhooks, tests)."""

    seq: int
    event: dict[str, Any]
    enqueued_at: float
    delivered_at: float | None
    attempts: int
    last_error: str | None


def _entry(row: Sequence[Any]) -> Entry:
    return Entry(int(row[0]), orjson.loads(row[1]), row[2], row[3], int(row[4]), row[5])


def _dead_letter(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "seq": int(row[0]),
        "producer": row[1],
        "event": orjson.loads(row[2]),
        "reason": row[3],
        "replacement": orjson.loads(row[4]),
        "at": row[5],
    }


# -- SQLite: statements on a connection the caller owns ----------------------------------------


def sqlite_create(conn: sqlite3.Connection) -> None:
    conn.executescript(SQLITE.ddl)


def sqlite_append(conn: sqlite3.Connection, producer: str, events: Sequence[Event], now: float | None = None) -> None:
    """Appends ``events`` in order (inside the caller's transaction, if one is open)."""
    at = time.time() if now is None else now
    conn.executemany(SQLITE.append, [(producer, dumps(e), at) for e in events])


@contextlib.contextmanager
def sqlite_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on an autocommit connection (``isolation_level=None``) holding the
    database's write lock from its first statement (``BEGIN IMMEDIATE``): committed when the
    block ends, rolled back when it raises. A transaction a cancelled caller left open is
    rolled back first, never committed with this one's work."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteOutbox:
    """The outbox in a SQLite database, as a relay source. ``run`` executes a function on the
    database's connection off the event loop, serialised with the owner's other writes (the
    sandbox store's lock, the evolution store's writer thread); ``keep_delivered`` keeps
    delivered rows (readers walk them: webhooks, execution history) instead of deleting them.

    Rows up to ``_after`` are settled (delivery is in order), so reads start there on the
    primary key. An outbox that is the only writer of its file (``open``) also keeps the
    pending events it appended in memory (up to ``_TAIL`` of them), so the relay does not read
    back and parse what it has just written."""

    _TAIL = 50_000

    def __init__(
        self,
        run: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]],
        producer: str,
        *,
        keep_delivered: bool = True,
        durable: bool = True,
        sole_writer: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._run = run
        self.producer = producer
        self.keep_delivered = keep_delivered
        #: False for an in-memory outbox: what it holds dies with the process.
        self.durable = durable
        self._on_close = on_close
        self._after = 0
        # The pending rows, in order, once they are all known (``_sole_writer`` only); None
        # while the file may hold pending rows not read yet (at start, past ``_TAIL``).
        self._sole_writer = sole_writer
        self._tail: collections.deque[tuple[int, dict[str, Any]]] | None = None

    @classmethod
    def open(cls, path: str | Path, producer: str, *, keep_delivered: bool = False) -> SqliteOutbox:
        """An outbox with a connection of its own on ``path`` (``":memory:"``: not durable),
        which this object alone writes (a ``Claim`` makes sure of it across processes).
        WAL with ``synchronous=NORMAL``: an append survives a crash of the process once
        committed; a power cut may lose the last commits, never corrupt the file."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        sqlite_create(conn)
        lock = threading.Lock()

        def locked(fn: Callable[[sqlite3.Connection], T]) -> T:
            with lock:
                return fn(conn)

        def close() -> None:
            with lock:
                conn.close()

        async def run(fn: Callable[[sqlite3.Connection], T]) -> T:
            return await asyncio.to_thread(locked, fn)

        return cls(
            run, producer, keep_delivered=keep_delivered, durable=str(path) != ":memory:", sole_writer=True, on_close=close
        )

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    async def append(self, events: Sequence[Event]) -> None:
        """Appends ``events`` in one transaction (the decision log's batches)."""
        if not events:
            return

        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                sqlite_append(conn, self.producer, events)
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            tail = self._tail
            if tail is not None:
                if len(tail) + len(events) > self._TAIL:
                    self._tail = None  # too many waiting: read them from the file
                else:
                    # One writer: the batch's seqs are consecutive, ending at ``last``.
                    first = int(last) - len(events) + 1
                    tail.extend((first + i, e) for i, e in enumerate(events))  # type: ignore[misc]

        await self._run(run)

    async def pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        def run(conn: sqlite3.Connection) -> list[tuple[int, dict[str, Any]]]:
            tail = self._tail
            if tail is not None:
                return list(itertools.islice(tail, limit))
            conn.execute("BEGIN")  # one snapshot for the rows and the high-water mark
            try:
                rows = conn.execute(SQLITE.pending, (self._after, limit)).fetchall()
                if not rows:
                    # Everything up to the last row is settled: later reads start past it.
                    top = conn.execute("SELECT max(seq) FROM acgs_outbox").fetchone()[0]
                    self._after = max(self._after, int(top or 0))
            finally:
                conn.execute("COMMIT")
            out = [(int(seq), orjson.loads(event)) for seq, event in rows]
            if self._sole_writer and len(out) < limit:
                # Every pending row is known now, and only this object appends more.
                self._tail = collections.deque(out)
            return out

        result: list[tuple[int, dict[str, Any]]] = await self._run(run)
        return result

    async def depth(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if self._tail is not None:
                return len(self._tail)
            return int(conn.execute(SQLITE.depth, (self._after,)).fetchone()[0])

        return int(await self._run(run))

    async def mark_delivered(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        low, high = min(seqs), max(seqs)
        now = time.time()

        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                if self.keep_delivered:
                    conn.execute(SQLITE.delivered, (now, low, high))
                else:
                    conn.execute(SQLITE.delete_delivered, (low, high))
            self._after = max(self._after, high)
            tail = self._tail
            while tail and tail[0][0] <= high:
                tail.popleft()

        await self._run(run)

    async def mark_failed(self, seqs: Sequence[int], error: str) -> None:
        if not seqs:
            return

        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                conn.executemany(SQLITE.failed, [(_cut(error), s) for s in seqs])

        await self._run(run)

    async def dead_letter(self, seq: int, reason: str, replacement: Event) -> None:
        """Moves the event at ``seq`` to the dead letters and puts ``replacement`` in its place,
        pending, in one transaction."""
        text, why = dumps(replacement), _cut(reason)

        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                conn.execute(SQLITE.move_dead, (why, text, time.time(), seq))
                conn.execute(SQLITE.replace, (text, f"dead letter: {why}", seq))
            tail = self._tail
            if tail is not None:
                for i, (at, _) in enumerate(tail):
                    if at == seq:
                        tail[i] = (seq, replacement)  # type: ignore[assignment]
                        break

        await self._run(run)

    async def record_dead_letter(self, event: Event, reason: str, replacement: Event) -> None:
        """A refusal met outside the relay (the decision log's ``sync`` mode delivers directly):
        the refused event joins the dead letters under a seq of its own, already settled."""
        text, why, now = dumps(replacement), _cut(reason), time.time()

        def run(conn: sqlite3.Connection) -> None:
            with sqlite_transaction(conn):
                cur = conn.execute(SQLITE.append, (self.producer, dumps(event), now))
                conn.execute(SQLITE.move_dead, (why, text, now, cur.lastrowid))
                conn.execute("DELETE FROM acgs_outbox WHERE seq = ?", (cur.lastrowid,))

        await self._run(run)

    async def entries(self, *, pending_only: bool, limit: int, after: int = 0) -> list[Entry]:
        sql = SQLITE.entries_pending if pending_only else SQLITE.entries
        rows = await self._run(lambda conn: conn.execute(sql, (after, limit)).fetchall())
        return [_entry(r) for r in rows]

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._run(lambda conn: conn.execute(SQLITE.dead_letters, (limit,)).fetchall())
        return [_dead_letter(r) for r in rows]


def sqlite_pending(conn: sqlite3.Connection, limit: int) -> list[tuple[int, dict[str, Any]]]:
    return [(int(s), orjson.loads(e)) for s, e in conn.execute(SQLITE.pending, (0, limit)).fetchall()]


def sqlite_dead_letters(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    return [_dead_letter(r) for r in conn.execute(SQLITE.dead_letters, (limit,)).fetchall()]


# -- PostgreSQL (asyncpg) ----------------------------------------------------------------------


async def postgres_append(conn: Any, producer: str, events: Sequence[Event], now: float) -> None:
    """Appends ``events`` inside the caller's open transaction; holds the append lock until it
    commits, so ``seq`` order is commit order."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_APPEND_LOCK)
    await conn.executemany(POSTGRES.append, [(producer, dumps(e), now) for e in events])


class PostgresOutbox:
    """The outbox in a PostgreSQL database (an asyncpg pool the owner opened), as a relay
    source. Delivered rows are kept (webhooks walk them)."""

    def __init__(self, pool: Callable[[], Any], producer: str) -> None:
        self._pool = pool
        self.producer = producer
        # Rows up to here are settled (delivery is in order; the append lock makes seq order
        # commit order).
        self._after = 0

    async def pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        async with self._pool().acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(POSTGRES.pending, self._after, limit)
            if not rows:
                # Everything committed is settled, and a row still being committed holds the
                # append lock, so its seq is above every committed one.
                self._after = max(self._after, int(await conn.fetchval("SELECT COALESCE(max(seq), 0) FROM acgs_outbox")))
        return [(int(r[0]), orjson.loads(r[1])) for r in rows]

    async def depth(self) -> int:
        async with self._pool().acquire() as conn:
            return int(await conn.fetchval(POSTGRES.depth, self._after))

    async def mark_delivered(self, seqs: Sequence[int]) -> None:
        if seqs:
            async with self._pool().acquire() as conn:
                await conn.execute(POSTGRES.delivered, time.time(), list(seqs))
            self._after = max(self._after, max(seqs))

    async def mark_failed(self, seqs: Sequence[int], error: str) -> None:
        if seqs:
            async with self._pool().acquire() as conn:
                await conn.execute(POSTGRES.failed, _cut(error), list(seqs))

    async def dead_letter(self, seq: int, reason: str, replacement: Event) -> None:
        text, why = dumps(replacement), _cut(reason)
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(POSTGRES.move_dead, why, text, time.time(), seq)
            await conn.execute(POSTGRES.replace, text, f"dead letter: {why}", seq)

    async def entries(self, *, pending_only: bool, limit: int, after: int = 0) -> list[Entry]:
        async with self._pool().acquire() as conn:
            rows = await conn.fetch(POSTGRES.entries_pending if pending_only else POSTGRES.entries, after, limit)
        return [_entry(tuple(r)) for r in rows]

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self._pool().acquire() as conn:
            rows = await conn.fetch(POSTGRES.dead_letters, limit)
        return [_dead_letter(tuple(r)) for r in rows]


# -- claiming a file ---------------------------------------------------------------------------


class Claim:
    """An exclusive hold on one outbox file in ``directory`` (``0.sqlite3``, ``1.sqlite3``,
    ...): each process of a service (``--workers``) appends to a file of its own, and a
    restarted process takes over a free file, delivering what its predecessor left."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        index = 0
        while True:
            fd = os.open(directory / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                index += 1
                continue
            self._fd: int | None = fd
            self.path = directory / f"{index}.sqlite3"
            return

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()


# -- the relay ---------------------------------------------------------------------------------


class RelaySource(Protocol):
    """What the relay needs of an outbox."""

    producer: str

    async def pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]: ...

    async def depth(self) -> int: ...

    async def mark_delivered(self, seqs: Sequence[int]) -> None: ...

    async def mark_failed(self, seqs: Sequence[int], error: str) -> None: ...

    async def dead_letter(self, seq: int, reason: str, replacement: Event) -> None: ...


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def send(sink: Any, events: list[Event]) -> None:
    """Hands ``events`` to ``sink``: its ``record_many`` (coroutine or blocking), else its
    ``record`` one at a time. A failure carries how many were acknowledged before it."""
    record_many = getattr(sink, "record_many", None)
    if record_many is not None:
        await _maybe(record_many(events))
        return
    for done, event in enumerate(events):
        try:
            await _maybe(sink.record(event))
        except Exception as exc:
            with contextlib.suppress(AttributeError, TypeError):
                exc.delivered = done  # type: ignore[attr-defined]
            raise


class OutboxRelay:
    """Drains ``source`` into ``sink`` in order: batches of ``batch``, a pass as soon as
    ``notify`` is called or every ``interval`` seconds, exponential backoff from ``retry`` to
    ``max_backoff`` on transient failures. Counters: ``delivered``, ``failures``, ``rejected``,
    ``depth`` (pending events at the last pass)."""

    def __init__(
        self,
        source: RelaySource,
        sink: Any,
        *,
        interval: float = 1.0,
        batch: int = 100,
        retry: float = 0.1,
        max_backoff: float = 30.0,
        name: str | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.producer = source.producer
        self.interval = interval
        self.batch = batch
        self.retry = retry
        self.max_backoff = max_backoff
        self.name = name or f"acgs-{self.producer}-outbox-relay"
        self.delivered = 0
        self.failures = 0
        self.rejected = 0
        self.depth = 0
        #: The last pass failed (the sink is down): the relay is backing off.
        self.failing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # ``drained``: passes asked for, and the last request a pass that emptied the outbox
        # started after.
        self._asked = 0
        self._passed = 0

    # -- one pass ------------------------------------------------------------------------------

    async def deliver_once(self) -> int:
        """Delivers everything pending now; returns how many outbox rows were settled. Raises
        the sink's error on a transient failure, recorded on the row that failed."""
        settled = 0
        while True:
            pending = await self.source.pending(self.batch)
            self.depth = len(pending)
            if not pending:
                return settled
            settled += await self._deliver(pending)

    async def _deliver(self, pending: list[tuple[int, dict[str, Any]]]) -> int:
        try:
            await send(self.sink, [event for _, event in pending])
        except Exception as exc:
            done = delivered_before(exc)
            await self._settle(pending[:done])
            rest = pending[done:]
            if not is_rejection(exc) or not rest:
                await self.source.mark_failed([rest[0][0]] if rest else [], f"{type(exc).__name__}: {exc}")
                raise
            if len(rest) > 1:
                # Which event was refused? One at a time finds it; the rest go on.
                return done + await self._deliver_singly(rest)
            await self._refused(*rest[0], exc)
            return done + 1
        await self._settle(pending)
        return len(pending)

    async def _deliver_singly(self, pending: list[tuple[int, dict[str, Any]]]) -> int:
        for i, (seq, event) in enumerate(pending):
            try:
                await send(self.sink, [event])
            except Exception as exc:
                if not is_rejection(exc):
                    await self.source.mark_failed([seq], f"{type(exc).__name__}: {exc}")
                    raise
                await self._refused(seq, event, exc)
                # The stand-in now holds ``seq``: the next batch delivers it first.
                return i + 1
            await self._settle([(seq, event)])
        return len(pending)

    async def _settle(self, done: Sequence[tuple[int, Any]]) -> None:
        if done:
            await self.source.mark_delivered([seq for seq, _ in done])
            self.delivered += sum(1 for _, e in done if e.get("event_type") != DELIVERY_REJECTED)

    async def _refused(self, seq: int, event: dict[str, Any], exc: BaseException) -> None:
        reason = str(exc)
        if event.get("event_type") == DELIVERY_REJECTED:
            # Our own stand-in refused (it never should be): settle it so delivery goes on; the
            # original stays in the dead letters.
            log.error("the audit log refused the %s delivery_rejected event %d: %s", self.producer, seq, reason)
            await self.source.mark_failed([seq], f"refused: {reason}")
            await self.source.mark_delivered([seq])
            return
        self.rejected += 1
        log.error("the audit log refused %s outbox event %d (%s); it is dead-lettered", self.producer, seq, reason)
        await self.source.dead_letter(seq, reason, rejection_event(event, reason, self.producer))

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Delivers until cancelled (or ``close``); never gives up on an event."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        streak = 0
        while not self._stopping:
            self._wake.clear()
            asked = self._asked
            try:
                await self.deliver_once()
                streak = 0
                self.failing = False
                delay = self.interval
                self._passed = asked
                self._idle.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a transient failure is retried, never dropped
                self.failures += 1
                self.failing = True
                streak += 1
                delay = min(self.max_backoff, self.retry * 2 ** min(streak - 1, 30))
                log.warning("%s audit outbox delivery failed (%s); retrying in %.2fs", self.producer, exc, delay)
                with contextlib.suppress(Exception):
                    self.depth = await self.source.depth()
            if self.failing:
                # Backing off: new appends do not cut the wait short.
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def notify(self) -> None:
        """Something was appended: deliver now rather than at the next tick (any thread)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return

        if self._thread is None and _running_loop() is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    async def drained(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for a pass that found the outbox empty (same loop as ``run``)."""
        if self._idle is None or self._wake is None:
            return False
        self._asked += 1
        want = self._asked
        deadline = time.monotonic() + timeout
        while self._passed < want:
            self._idle.clear()
            self._wake.set()
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return True

    def start(self) -> asyncio.Task[None]:
        """Runs the relay as a task of the current event loop."""
        self._task = asyncio.create_task(self.run(), name=self.name)
        return self._task

    def start_thread(self) -> None:
        """Runs the relay on a daemon thread with an event loop of its own (threaded callers;
        a blocking sink then blocks only that thread)."""
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._thread.start()

    def _thread_main(self) -> None:
        async def main() -> None:
            self._task = asyncio.current_task()
            with contextlib.suppress(asyncio.CancelledError):
                await self.run()

        asyncio.run(main())

    def close(self, timeout: float = 5.0) -> None:
        """Stops a relay started with ``start_thread`` (what is pending stays in the outbox)."""
        self._stopping = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
        close = getattr(self.sink, "close", None)
        if close is not None and not inspect.iscoroutinefunction(close):
            close()

    async def aclose(self) -> None:
        """Stops a relay started with ``start`` (what is pending stays in the outbox)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


__all__ = [
    "POSTGRES",
    "SQLITE",
    "Claim",
    "Dialect",
    "Entry",
    "OutboxRelay",
    "PostgresOutbox",
    "RelaySource",
    "SqliteOutbox",
    "dumps",
    "postgres_append",
    "send",
    "sqlite_append",
    "sqlite_create",
    "sqlite_transaction",
]
