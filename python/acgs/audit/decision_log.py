"""Decision logs: one audit event per policy decision, written in batches by a background task.

A request handler hands ``DecisionLog.offer`` a small tuple (no hashing, no JSON); the task
turns queued entries into audit events (decision id, bundle digest, constitutional hash, SHA-256
of the canonical input and, if configured, the input itself, the result). The queue is bounded:
when it is full the handler waits for room (backpressure) rather than dropping the log.

Two modes (``ACGS_POLICY_DECISION_LOG_MODE``):

- ``async`` (the default): ``offer`` returns once the entry is queued, so the decision is
  answered before its event is durable. The writer appends each batch to ACGS's audit outbox
  (``acgs.audit.outbox``: one SQLite transaction per batch, WAL, ``synchronous=NORMAL``, no
  fsync per decision) and the one ``OutboxRelay`` delivers the outbox to the audit log in order,
  retrying with backoff. Once a batch is in the outbox file it survives the process (kill -9;
  a power cut may take the last commits): the next start delivers it. What is still queued
  (not yet in the outbox) when the process dies is lost; entries still queued when the service
  stops past its drain deadline are counted in ``dropped``. Without an outbox file (the
  ``outbox`` argument), the outbox is in memory and a process that dies loses it.
- ``sync``: ``offer`` returns only once the audit store acknowledged the event as durable, so
  every decision a client received is in the audit log. Decisions that arrive while a batch is
  being appended share the next batch (group commit). A failed append is not retried: the
  waiting handlers get ``DecisionLogUnavailable`` and answer an error instead of the decision.

Every decision is logged whatever the shape of its input: an input that is not an object, is
not canonical JSON, or is too large to keep whole is logged by its digest. An event the audit
log still refuses (a 4xx, see ``acgs.audit.delivery``) is never retried: it goes to the
outbox's dead letters and a ``delivery_rejected`` event (its digest, size, the reason) takes
its place in the log, so the events behind it keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from acgs import _acgs as core
from acgs.audit.delivery import FIT_PAYLOAD, delivered_before, is_rejection, rejection_event
from acgs.audit.events import GENESIS, MAX_FIELD
from acgs.audit.outbox import OutboxRelay, SqliteOutbox
from acgs.errors import AuditError, CanonicalJsonError

log = logging.getLogger("acgs.audit")

EVENT_TYPE = "policy_decision"
#: ``input`` setting values.
INPUT_DIGEST = "digest"
INPUT_FULL = "full"
#: ``mode`` setting values.
MODE_ASYNC = "async"
MODE_SYNC = "sync"
PRODUCER = "policy"
#: Canonical bytes of input and result a decision event keeps whole; past it, their digests.
MAX_KEPT = FIT_PAYLOAD - 8192


class DecisionLogUnavailable(AuditError):
    """In ``sync`` mode: the decision's audit event was not acknowledged, so the decision must
    not be answered."""

    code = "decision_log_unavailable"


class BatchSink(Protocol):
    """Where decision events go: returns once all are durable, raises otherwise."""

    def record_many(self, events: list[Mapping[str, Any]]) -> Awaitable[Any]: ...


def _sha256(data: bytes) -> str:
    # The audit core's content hash is SHA-256 of the bytes given.
    return core.event_hashes(GENESIS, data)[0].hex()


def _canonical_result(result: Any) -> tuple[Any, int]:
    """The result as logged and its canonical size."""
    try:
        return result, len(core.canonical_json(result))
    except Exception:  # noqa: BLE001 - whatever the core cannot take is logged by digest
        return {"unrepresentable_sha256": _sha256(repr(result).encode())}, 90


def _cap(text: str) -> str:
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "\u2026"


def _agent_of(value: dict[str, Any]) -> Any:
    found = value.get("agent_id")
    if found:
        return found
    context = value.get("context")
    agent = context.get("agent") if type(context) is dict else None
    return agent.get("id") if type(agent) is dict else None


class DecisionLog:
    """The queue and its writer. ``start`` (or the first ``offer``) runs the writer on the
    current event loop; ``close`` drains it."""

    def __init__(
        self,
        sink: BatchSink,
        *,
        bundle_digest: str = "",
        constitutional_hash: str | None = None,
        include_input: str = INPUT_DIGEST,
        mode: str = MODE_ASYNC,
        capacity: int = 10_000,
        batch: int = 512,
        max_backoff: float = 5.0,
        outbox: SqliteOutbox | None = None,
        relay_interval: float = 1.0,
        on_open: Callable[[], Awaitable[None]] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if include_input not in (INPUT_DIGEST, INPUT_FULL):
            raise ValueError(f"decision log input must be {INPUT_DIGEST!r} or {INPUT_FULL!r}, not {include_input!r}")
        if mode not in (MODE_ASYNC, MODE_SYNC):
            raise ValueError(f"decision log mode must be {MODE_ASYNC!r} or {MODE_SYNC!r}, not {mode!r}")
        self.sink = sink
        self.bundle_digest = bundle_digest
        self.constitutional_hash = constitutional_hash
        self.include_input = include_input
        self.mode = mode
        self.durable = mode == MODE_SYNC
        self.capacity = capacity
        self.batch = batch
        self.max_backoff = max_backoff
        self._on_open = on_open
        self._on_close = on_close
        self._queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Where batches wait for delivery (owned: closed with the log), and what delivers them.
        self.outbox = outbox if outbox is not None else SqliteOutbox.open(":memory:", PRODUCER)
        self.relay = OutboxRelay(
            self.outbox, sink, interval=relay_interval, batch=batch, retry=0.05, max_backoff=max_backoff,
            name="acgs-decision-log-relay",
        )  # fmt: skip
        self._relay_task: asyncio.Task[None] | None = None
        self.offered = 0
        self.dropped = 0
        self.waits = 0
        #: ``sync`` mode: decisions refused because their event was not acknowledged.
        self.unacknowledged = 0
        self._written = 0
        self._failures = 0
        self._rejected = 0
        #: Batches being appended; ``sync`` mode keeps two in flight.
        self.appends_in_flight = 2 if self.durable else 1
        self._inflight: dict[int, list[tuple[Any, ...]]] = {}
        self._writers: set[asyncio.Task[None]] = set()

    @property
    def depth(self) -> int:
        """Decisions queued or in the outbox, not yet delivered."""
        return (self._queue.qsize() if self._queue is not None else 0) + self.relay.depth

    @property
    def written(self) -> int:
        """Decision events the audit log acknowledged."""
        return self._written + self.relay.delivered

    @property
    def failures(self) -> int:
        """Failed appends to the outbox and failed deliveries (retried in ``async`` mode)."""
        return self._failures + self.relay.failures

    @property
    def rejected(self) -> int:
        """Decision events the audit log refused (dead-lettered, a stand-in logged)."""
        return self._rejected + self.relay.rejected

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The refused events, most recent first (the log holds their digests for good)."""
        return await self.outbox.dead_letters(limit)

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue(self.capacity)
            self._task = asyncio.create_task(self._run(), name="acgs-decision-log")

    async def offer(
        self, decision_id: str, path: str, raw_input: bytes | None, result: Any, outcome: str | None
    ) -> None:
        """Queues one decision; waits while the queue is full and, in ``sync`` mode, until the
        event is durable (raising ``DecisionLogUnavailable`` if it is not)."""
        if self._task is None:
            self.start()
        assert self._queue is not None
        if self.durable:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self._put((decision_id, path, raw_input, result, outcome, time.time(), done))
            await done
        else:
            await self._put((decision_id, path, raw_input, result, outcome, time.time()))

    async def offer_many(self, entries: Sequence[tuple[str, str, bytes | None, Any, str | None]]) -> None:
        """``offer`` for the decisions of one batch request: in ``sync`` mode they are queued
        together and awaited together, so they share appends instead of taking one each."""
        if not self.durable:
            for entry in entries:
                await self.offer(*entry)
            return
        if self._task is None:
            self.start()
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        for entry in entries:
            done: asyncio.Future[None] = loop.create_future()
            waiting.append(done)
            await self._put((*entry, time.time(), done))
        failed: BaseException | None = None
        for done in waiting:
            try:
                await done
            except DecisionLogUnavailable as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    async def _put(self, entry: tuple[Any, ...]) -> None:
        assert self._queue is not None
        self.offered += 1
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.waits += 1
            await self._queue.put(entry)

    def event_of(self, entry: tuple[Any, ...]) -> dict[str, Any]:
        """The decision's audit event, within the audit log's limits whatever the input."""
        decision_id, path, raw_input, result, outcome, at = entry[:6]
        path = _cap(str(path))
        metadata: dict[str, Any] = {"path": path, "bundle_digest": self.bundle_digest, "decided_at": at}
        value: Any = None
        logged, result_size = _canonical_result(result)
        if raw_input is not None:
            try:
                canonical = core.canonicalize_json(raw_input)
                metadata["input_sha256"] = _sha256(canonical)
                value = orjson.loads(canonical)
                if self.include_input == INPUT_FULL:
                    if len(canonical) + result_size <= MAX_KEPT:
                        metadata["input"] = value
                    else:
                        # Too large to keep whole: the digest above stands for it.
                        metadata["input_size"] = len(canonical)
                        metadata["input_truncated"] = True
            except CanonicalJsonError:
                # An input JSON cannot hold canonically is still logged, by the digest of its bytes.
                metadata["input_sha256"] = _sha256(raw_input)
                metadata["input_canonical"] = False
            except Exception:  # noqa: BLE001 - any input, however malformed, is logged by digest
                metadata["input_sha256"] = _sha256(bytes(raw_input))
                metadata["input_canonical"] = False
        if result_size > MAX_KEPT:
            logged = {"sha256": _sha256(core.canonical_json(result)), "size": result_size, "truncated": True}
        metadata["result"] = logged
        agent = "unknown"
        action = path
        if type(value) is dict:
            agent = str(_agent_of(value) or "unknown")
            action = str(value.get("action") or path)
        if type(result) is dict and type(result.get("allow")) is bool:
            verdict = "allow" if result["allow"] else "deny"
        else:
            verdict = outcome or "undefined"
        event: dict[str, Any] = {
            "event_type": EVENT_TYPE,
            "agent_id": agent[:512] or "unknown",
            "action": action[:512] or "decision",
            "result": verdict,
            "metadata": metadata,
            "decision_id": decision_id,
        }
        chash = result.get("constitutional_hash") if type(result) is dict else None
        chash = chash if isinstance(chash, str) and len(chash) <= MAX_FIELD else self.constitutional_hash
        if chash:
            event["constitutional_hash"] = chash
        return event

    async def _write(self, entries: Sequence[tuple[Any, ...]]) -> None:
        events: list[Mapping[str, Any]] = []
        logged: list[tuple[Any, ...]] = []
        for entry in entries:
            try:
                events.append(self.event_of(entry))
                logged.append(entry)
            except Exception:
                log.exception("decision log entry %s could not be made into an event", entry[0])
                self.dropped += 1
                if self.durable:
                    self.unacknowledged += 1
                    _settle(entry, f"decision {entry[0]} could not be made into an audit event")
        if self.durable:
            await self._write_once(events, logged)
            return
        await self._append(events)

    async def _append(self, events: list[Mapping[str, Any]]) -> None:
        """``async`` mode: one outbox transaction for the batch, retried with backoff (never
        skipped); the relay is woken to deliver it."""
        delay = 0.05
        while events:
            try:
                await self.outbox.append(events)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failures += 1
                log.warning("decision log: appending to the outbox failed; retrying in %.2fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
        self.relay.notify()

    async def _dead_letter(self, event: Mapping[str, Any], reason: str) -> dict[str, Any]:
        """``sync`` mode: sets a refused event aside in the outbox's dead letters and returns
        the ``delivery_rejected`` event for its place."""
        self._rejected += 1
        log.error("decision log: the audit log refused the event of decision %s (%s); logged as delivery_rejected",
                  event.get("decision_id"), reason)
        replacement = rejection_event(event, reason, PRODUCER)
        try:
            await self.outbox.record_dead_letter(event, reason, replacement)
        except Exception:
            log.exception("decision log: the refused event of decision %s could not be kept", event.get("decision_id"))
        return replacement

    async def _write_once(self, events: list[Mapping[str, Any]], entries: list[tuple[Any, ...]]) -> None:
        """``sync`` mode: one attempt; the waiting handlers learn its outcome. No retry here:
        a handler that waited through retries would hold its client past any sensible deadline,
        and the client can ask again."""
        if not events:
            return
        try:
            await self.sink.record_many(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            done = delivered_before(exc)
            self._written += done
            for entry in entries[:done]:
                _settle(entry, None)
            events, entries = events[done:], entries[done:]
            if is_rejection(exc):
                await self._write_each(events, entries)
                return
            self._failures += 1
            self.unacknowledged += len(entries)
            log.warning("decision log append failed; %d decision(s) refused", len(entries), exc_info=True)
            failure = f"the audit log did not acknowledge the decision: {type(exc).__name__}: {exc}"
            for entry in entries:
                _settle(entry, failure)
            return
        self._written += len(events)
        for entry in entries:
            _settle(entry, None)

    async def _write_each(self, events: list[Mapping[str, Any]], entries: list[tuple[Any, ...]]) -> None:
        """``sync`` mode, after a refused batch: one attempt per event; a refused event is
        answered once its ``delivery_rejected`` event is durable (the decision is accounted for
        in the log), any other failure refuses the decision."""
        for event, entry in zip(events, entries, strict=True):
            failed = await _once(self.sink, [event])
            if failed is not None and is_rejection(failed):
                failed = await _once(self.sink, [await self._dead_letter(event, str(failed))])
            if failed is None:
                self._written += 1
                _settle(entry, None)
            else:
                self._failures += 1
                self.unacknowledged += 1
                _settle(entry, f"the audit log did not acknowledge the decision: {type(failed).__name__}: {failed}")

    async def _run(self) -> None:
        assert self._queue is not None
        q = self._queue
        if self._on_open is not None:
            await self._on_open()
        # What an earlier process left in the outbox goes first.
        self._relay_task = self.relay.start()
        lanes = asyncio.Semaphore(self.appends_in_flight)
        while True:
            await lanes.acquire()
            first = await q.get()
            entries = [first]
            while len(entries) < self.batch and not q.empty():
                entries.append(q.get_nowait())
            if self.appends_in_flight == 1:
                try:
                    await self._write_tracked(entries)
                finally:
                    lanes.release()
                continue
            # sync mode: the next batch is built and sent while this one is being committed,
            # so the policy service and the audit store work at the same time.
            writer = asyncio.create_task(self._write_tracked(entries))
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
            writer.add_done_callback(lambda _: lanes.release())

    async def _write_tracked(self, entries: list[tuple[Any, ...]]) -> None:
        assert self._queue is not None
        self._inflight[id(entries)] = entries
        try:
            await self._write(entries)
        finally:
            del self._inflight[id(entries)]
            for _ in entries:
                self._queue.task_done()

    async def close(self, timeout: float = 10.0) -> None:
        """Waits up to ``timeout`` for the queue to drain into the outbox and the outbox to the
        audit log, then stops the writer and the relay. What is still queued then is counted as
        dropped (and, in ``sync`` mode, its handlers are refused); what is in a durable outbox
        stays there for the next start."""
        if self._task is None or self._queue is None:
            self.outbox.close()
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        # A durable outbox keeps what the audit log has not taken: no need to wait for a sink
        # that is down.
        wait = self._relay_task is not None and not (self.outbox.durable and self.relay.failing)
        drained = wait and await self.relay.drained(max(0.0, deadline - time.monotonic()))
        left = [entry for entries in self._inflight.values() for entry in entries]
        for task in (self._task, *self._writers):
            task.cancel()
        for task in (self._task, *self._writers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.aclose()
        self._relay_task = None
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        self.dropped += len(left)
        stopped = "the policy service is stopping; the decision was not logged"
        for entry in left:
            _settle(entry, stopped)
        if not drained:
            with contextlib.suppress(Exception):
                undelivered = await self.outbox.depth()
                if not self.outbox.durable:
                    self.dropped += undelivered
                elif undelivered:
                    log.warning("decision log: %d event(s) stay in the outbox; the next start delivers them", undelivered)
        if self.dropped:
            log.error("decision log: %d decision(s) not written before shutdown", self.dropped)
        self._task = None
        self.outbox.close()
        if self._on_close is not None:
            await self._on_close()


async def _once(sink: BatchSink, events: list[Mapping[str, Any]]) -> BaseException | None:
    try:
        await sink.record_many(events)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc
    return None


def _settle(entry: tuple[Any, ...], failure: str | None) -> None:
    """Wakes the handler waiting on a ``sync`` entry (async entries have no waiter), with
    ``DecisionLogUnavailable(failure)`` unless ``failure`` is None."""
    if len(entry) < 7:
        return
    done: asyncio.Future[None] = entry[6]
    if done.done():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(DecisionLogUnavailable(failure))
