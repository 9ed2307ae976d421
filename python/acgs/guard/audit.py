"""The guard's audit trail: one ``tool_call`` event per guarded call, queued by the calling
thread and delivered by the one ``OutboxRelay`` on a thread of its own, through an audit outbox
(``acgs.audit.outbox``), to the audit service over HTTP or to an ``AuditLog`` in this process.

A guarded call hands over what its event is made of (``record_call``: a builder and a small
tuple; the relay's thread builds the event, digests included) or a finished event (``record``).
With the outbox in memory (the default) that is all the calling thread does: the event goes on
an in-memory queue and the relay is woken, so the call never waits for SQLite or the audit log;
the relay's thread builds queued events, fits them to the audit log's limits (``fit_event``)
and appends them to the outbox, a batch per transaction, before each of its passes. A memory
outbox dies with the process whatever the thread, so nothing acknowledged is lost by queueing.
With ``outbox`` naming a file, the calling thread builds, fits and appends its event and commits
it before the call returns, as docs/agents.md promises: an event the guard recorded survives a
crash of the process (the next guard on that file delivers what is left). Events carry
``metadata.idempotency_key`` ``tool:<decision id>``: delivered twice, stored once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from acgs.audit.delivery import fit_event
from acgs.audit.log import AuditLog
from acgs.audit.outbox import OutboxRelay, SqliteOutbox, sqlite_append, sqlite_create
from acgs.audit.sink import BlockingHttpAuditSink, LocalAuditSink

log = logging.getLogger("acgs.guard")

PRODUCER: Final = "guard"
EVENT_TYPE: Final = "tool_call"
T = TypeVar("T")


def sink_for(audit: Any, *, api_key: str | None = None) -> Any:
    """The sink ``audit`` names: an audit service URL, an ``AuditLog`` of this process, or a
    sink itself (an object with ``record_many`` or ``record``, blocking or coroutine)."""
    if isinstance(audit, str):
        return BlockingHttpAuditSink(audit, api_key=api_key)
    if isinstance(audit, AuditLog):
        return LocalAuditSink(audit)
    if callable(getattr(audit, "record_many", None)) or callable(getattr(audit, "record", None)):
        return audit
    raise TypeError(f"audit must be an audit service URL, an AuditLog or a sink, not {type(audit).__name__}")


class GuardAudit:
    """An outbox (``outbox``: a SQLite file, or None for memory) and its relay into ``sink``.
    The relay thread starts with the first event; ``close`` stops it."""

    def __init__(self, sink: Any, *, outbox: str | Path | None = None, interval: float = 1.0) -> None:
        path = ":memory:" if outbox is None else str(outbox)
        if outbox is not None:
            Path(outbox).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            sqlite_create(self._db)
        self.sink = sink
        self.outbox = SqliteOutbox(self._run, PRODUCER, keep_delivered=False, durable=outbox is not None)
        self.relay = OutboxRelay(self.outbox, sink, interval=interval, retry=0.05, name="acgs-guard-audit-relay")
        self._started = False
        self._closed = False
        #: Events, or (builder, arguments) pairs the relay's thread makes events of.
        self._queue: collections.deque[Mapping[str, Any] | tuple[Callable[..., Mapping[str, Any]], tuple[Any, ...]]] = (
            collections.deque()
        )
        #: A file outbox: each event is committed in the calling thread before ``record`` returns.
        self._durable = outbox is not None
        self._woken = False
        self.recorded = 0
        #: Events that could not be made into outbox rows (logged; never expected).
        self.dropped = 0
        if outbox is not None and self.pending():
            self._start()  # what an earlier process left goes first

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            self._append_queued()
            return fn(self._db)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # The relay's statements are small: run them on its thread, under the lock, after
        # moving what the guarded calls queued into the outbox.
        return self._call(fn)

    def _append_queued(self) -> None:
        """Queued events into the outbox, one transaction (caller holds the lock)."""
        self._woken = False
        if not self._queue or self._closed:
            return
        events = []
        while self._queue:
            item = self._queue.popleft()
            try:
                event: Mapping[str, Any] = item[0](*item[1]) if isinstance(item, tuple) else item
            except Exception:  # noqa: BLE001 - the builder takes what the guard handed over; never expected
                self.dropped += 1
                log.exception("guard audit: an event could not be built")
                continue
            try:
                events.append(fit_event(event))
            except Exception:  # noqa: BLE001 - fit_event makes any mapping fit; never expected
                self.dropped += 1
                log.exception("guard audit: an event could not be fitted (decision %s)", event.get("decision_id"))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            sqlite_append(self._db, PRODUCER, events)
        except BaseException:
            self._db.execute("ROLLBACK")
            self._queue.extendleft(reversed(events))  # kept for the next pass
            raise
        self._db.execute("COMMIT")

    def _start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        self.relay.start_thread()

    def record(self, event: Mapping[str, Any]) -> None:
        """Records one event (see the module's docstring) and wakes the relay (once per batch,
        not per event)."""
        self._record(event)

    def record_call(self, build: Callable[..., Mapping[str, Any]], args: tuple[Any, ...]) -> None:
        """Records the event ``build(*args)``: built on the relay's thread for a memory outbox,
        here for a file one. ``args`` must not change afterwards (immutable values, copies)."""
        self._record((build, args))

    def _record(self, item: Mapping[str, Any] | tuple[Callable[..., Mapping[str, Any]], tuple[Any, ...]]) -> None:
        if self._closed:
            raise RuntimeError("the guard's audit trail is closed")
        self._queue.append(item)  # deque.append is atomic: no lock on the caller's path
        self.recorded += 1
        if self._durable:
            try:
                with self._lock:
                    self._append_queued()  # committed (WAL) before the guarded call returns
            except sqlite3.Error:
                # The event stays queued and the relay tries again on its next pass.
                log.exception("guard audit: the outbox file refused an event; the relay retries")
        if not self._started:
            self._start()
        if not self._woken:
            self._woken = True
            self.relay.notify()

    def pending(self) -> int:
        """Events not yet acknowledged by the audit log (queued or in the outbox)."""
        with self._lock:
            if self._closed:
                return 0
            queued = len(self._queue)
            return queued + int(self._db.execute("SELECT count(*) FROM acgs_outbox WHERE delivered_at IS NULL").fetchone()[0])

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every event so far is delivered (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            self.relay.notify()
            time.sleep(0.005)
        return True

    async def aflush(self, timeout: float = 10.0) -> bool:
        """``flush`` for asyncio callers (waits without blocking the loop)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            self.relay.notify()
            await asyncio.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what it can within ``timeout``, then stops the relay and closes the outbox
        (a file outbox keeps what is left for the next guard on it)."""
        if self._closed:
            return
        if self._started:
            self.flush(timeout)
            self.relay.close(timeout)
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._append_queued()  # a file outbox keeps them for the next guard
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
