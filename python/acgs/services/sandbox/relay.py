"""Delivery of the sandbox's audit outbox to the audit service.

Every execution's event is first written to the sandbox database's outbox (durable before the
run is answered); a background thread then posts pending events, in order and in batches, to
the audit service (``ACGS_SANDBOX_AUDIT_URL``) and marks them delivered only once the service
acknowledged them. A transient failure (5xx, connection, credentials) is retried with backoff;
nothing is skipped. An event the audit service refuses (4xx, see ``acgs.audit.delivery``)
moves to the dead-letter table and a ``delivery_rejected`` event takes its place, so the
events behind it keep flowing. After a crash between delivery and bookkeeping an event may
reach the audit log twice, never zero times."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from acgs.audit.delivery import delivered_before, is_rejection, rejection_event
from acgs.audit.sink import BlockingHttpAuditSink

from acgs.services.sandbox.store import ExecutionStore

log = logging.getLogger("acgs.services.sandbox")

PRODUCER = "sandbox"


class BatchSink(Protocol):
    def record_many(self, events: list[Mapping[str, Any]]) -> Any: ...


class OutboxRelay:
    """A daemon thread draining the outbox into ``POST {url}/audit/events`` (or ``sink``)."""

    def __init__(
        self,
        store: ExecutionStore,
        url: str,
        *,
        interval: float = 1.0,
        batch: int = 100,
        max_backoff: float = 30.0,
        sink: BatchSink | None = None,
    ) -> None:
        self.store = store
        self.url = url.rstrip("/")
        self.interval = interval
        self.batch = batch
        self.max_backoff = max_backoff
        self.sink: BatchSink = sink if sink is not None else BlockingHttpAuditSink(self.url)
        self.delivered = 0
        self.failures = 0
        self.rejected = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="acgs-sandbox-outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """A new event is waiting: deliver now rather than at the next tick."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def deliver_once(self) -> int:
        """Delivers one batch; returns how many outbox rows it settled (0 when the outbox is
        empty). Raises on a transient failure, leaving the batch pending."""
        pending = self.store.pending_events(self.batch)
        if not pending:
            return 0
        try:
            self.sink.record_many([event for _, event in pending])
        except Exception as exc:
            done = delivered_before(exc)
            if done:
                self.store.mark_delivered([seq for seq, _ in pending[:done]])
                self.delivered += done
            if not is_rejection(exc):
                raise
            return done + self._deliver_singly(pending[done:])
        self.store.mark_delivered([seq for seq, _ in pending])
        self.delivered += len(pending)
        return len(pending)

    def _deliver_singly(self, pending: list[tuple[int, Any]]) -> int:
        """After a refused batch: one event at a time, dead-lettering the refused ones."""
        for seq, event in pending:
            try:
                self.sink.record_many([event])
            except Exception as exc:
                if not is_rejection(exc):
                    raise
                if event.get("event_type") == "delivery_rejected":
                    # Our own replacement refused (it should never be): it stays in the outbox,
                    # the original in the dead letters; delivery goes on.
                    log.error("the audit service refused the delivery_rejected event %d: %s", seq, exc)
                    self.store.mark_delivered([seq])
                    return 1
                reason = str(exc)
                self.rejected += 1
                log.error("the audit service refused sandbox event %d (%s); it is dead-lettered", seq, reason)
                self.store.dead_letter(seq, reason, rejection_event(event, reason, PRODUCER))
                # The replacement now sits at ``seq``: the next round delivers it first.
                return 1
            self.store.mark_delivered([seq])
            self.delivered += 1
        return len(pending)

    def _run(self) -> None:
        backoff = self.interval
        while not self._stop.is_set():
            try:
                while self.deliver_once() and not self._stop.is_set():
                    pass
                backoff = self.interval
            except Exception as exc:  # noqa: BLE001 - any transient failure is retried, never dropped
                self.failures += 1
                log.warning("audit outbox delivery to %s failed (%s); retrying in %.1fs", self.url, exc, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            self._wake.wait(backoff)
            self._wake.clear()
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()
