"""Audit events of the evolution service: how each one is built, and where they go.

Every state change writes its event to the evolution database's outbox table
(``evolution_audit_outbox``) in the same transaction as the change, so an event is never lost
and never recorded for a change that did not happen. ``OutboxRelay`` then hands the outbox, in
order, to an ``AuditSink`` (the audit engine once it is connected); an event leaves the outbox
only after ``record`` returned, so delivery is at least once.

Events are fitted to the audit log's limits when they are made. An event the audit log still
refuses (a 4xx, see ``acgs.audit.delivery``) is not retried: a ``delivery_rejected`` event
(its digest, size, the reason) is delivered in its place and the outbox row is settled as a
dead letter (``delivered_at`` set, ``last_error`` starting with ``dead letter:``), so the events
behind it keep flowing. Transient failures are retried with backoff, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast

from acgs.audit.delivery import fit_event, is_rejection, rejection_event
from acgs.services.evolution.records import AuditEvent, EvolutionRecord
from acgs.services.evolution.store import EvolutionStore

log = logging.getLogger("acgs.services.evolution")

EVENT_TYPE = "evolution_transition"
PRODUCER = "evolution"
#: ``last_error`` of an outbox row the audit log refused.
DEAD_LETTER = "dead letter: "


def audit_event(
    record: EvolutionRecord,
    action: str,
    *,
    actor: str,
    previous: str | None,
    at: float,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The one place an evolution audit event is made. ``action`` is ``evolution.<verb>``;
    ``result`` is the request's status after the event. ``metadata.idempotency_key`` is unique
    per event, so a sink that sees an event twice (delivery is at least once) can tell."""
    metadata: dict[str, Any] = {
        "idempotency_key": f"evolution:{uuid.uuid4()}",
        "request_id": record.request_id,
        "change_type": record.type,
        "from_status": previous,
        "to_status": record.status.value,
        "actor": actor,
        "requested_by": record.requested_by,
        "approval_type": record.approval_type,
        "at": at,
    }
    if reason is not None:
        metadata["reason"] = reason
    if details:
        metadata.update(details)
    event = AuditEvent(
        event_type=EVENT_TYPE,
        agent_id=record.agent_id,
        action=action,
        result=record.status.value,
        metadata=metadata,
        decision_id=record.decision_id,
        constitutional_hash=record.constitutional_hash,
    )
    return cast(AuditEvent, fit_event(event))


class AuditSink(Protocol):
    """Where audit events end up. ``record`` returns only once the event is durable there;
    it may see an event twice (after a crash between delivery and bookkeeping)."""

    async def record(self, event: AuditEvent) -> None: ...


class OutboxRelay:
    """Delivers the outbox to a sink in order; a failed delivery stops the batch and is retried
    with exponential backoff, so a later event never overtakes an earlier one."""

    def __init__(
        self,
        store: EvolutionStore,
        sink: AuditSink,
        *,
        interval: float = 1.0,
        max_backoff: float = 60.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.interval = interval
        self.max_backoff = max_backoff
        self.batch = batch
        self.clock = clock
        self._failures = 0
        #: Outbox entries the audit log refused (dead-lettered).
        self.rejected = 0

    async def deliver_once(self) -> int:
        """Delivers what is pending now; returns how many events were delivered. Raises the
        sink's error after recording it on the entry that failed."""
        delivered = 0
        while True:
            entries = await self.store.outbox(pending_only=True, limit=self.batch)
            if not entries:
                return delivered
            for entry in entries:
                try:
                    await self.sink.record(entry.event)
                except Exception as exc:
                    if not is_rejection(exc):
                        await self.store.mark_failed([entry.id], f"{type(exc).__name__}: {exc}")
                        raise
                    await self._dead_letter(entry.id, entry.event, str(exc))
                    continue
                await self.store.mark_delivered([entry.id], self.clock())
                delivered += 1

    async def _dead_letter(self, entry_id: int, event: Any, reason: str) -> None:
        """Delivers the ``delivery_rejected`` event standing for a refused one (a transient
        failure raises and the whole is retried; its idempotency key stores it once), then
        settles the outbox row as a dead letter."""
        log.error("the audit log refused evolution outbox entry %d (%s); it is dead-lettered", entry_id, reason)
        replacement = rejection_event(event, reason, PRODUCER)
        try:
            await self.sink.record(cast(AuditEvent, replacement))
        except Exception as exc:
            if not is_rejection(exc):
                raise
            log.error("the audit log refused the delivery_rejected event of entry %d too: %s", entry_id, exc)
        self.rejected += 1
        await self.store.mark_delivered([entry_id], self.clock())
        await self.store.mark_failed([entry_id], f"{DEAD_LETTER}{reason}"[:2000])

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_once()
                self._failures = 0
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failures += 1
                delay = min(self.max_backoff, self.interval * 2 ** min(self._failures, 16))
                log.warning("audit outbox delivery failed (attempt %d); retrying in %.1fs", self._failures, delay, exc_info=True)
            await asyncio.sleep(delay)
