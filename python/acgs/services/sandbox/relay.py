"""Delivery of the sandbox's audit outbox to the audit service.

Every execution's event is first written to the sandbox database's outbox (durable before the
run is answered); a background thread then posts pending events, in order and in batches, to
the audit service (``ACGS_SANDBOX_AUDIT_URL``) and marks them delivered only once the service
acknowledged them. A failed delivery is retried with backoff; nothing is skipped. After a crash
between delivery and bookkeeping an event may reach the audit log twice, never zero times."""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx

from acgs.audit.sink import audit_auth_headers

from acgs.services.sandbox.store import ExecutionStore

log = logging.getLogger("acgs.services.sandbox")


class OutboxRelay:
    """A daemon thread draining the outbox into ``POST {url}/audit/events``."""

    def __init__(self, store: ExecutionStore, url: str, *, interval: float = 1.0, batch: int = 100) -> None:
        self.store = store
        self.url = url.rstrip("/")
        self.interval = interval
        self.batch = batch
        self.delivered = 0
        self.failures = 0
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

    def deliver_once(self, client: httpx.Client) -> int:
        """Delivers one batch; returns how many events went (0 when the outbox is empty)."""
        pending = self.store.pending_events(self.batch)
        if not pending:
            return 0
        events: list[Any] = [event for _, event in pending]
        response = client.post(f"{self.url}/audit/events", json=events)
        if response.status_code != 200:
            raise RuntimeError(f"audit service answered {response.status_code}: {response.text[:300]}")
        self.store.mark_delivered([seq for seq, _ in pending])
        self.delivered += len(pending)
        return len(pending)

    def _run(self) -> None:
        backoff = self.interval
        with httpx.Client(timeout=10.0, headers=audit_auth_headers()) as client:
            while not self._stop.is_set():
                try:
                    while self.deliver_once(client) and not self._stop.is_set():
                        pass
                    backoff = self.interval
                except Exception as exc:  # noqa: BLE001 - any failure is retried, never dropped
                    self.failures += 1
                    log.warning("audit outbox delivery to %s failed (%s); retrying in %.1fs", self.url, exc, backoff)
                    backoff = min(backoff * 2, 30.0)
                self._wake.wait(backoff)
                self._wake.clear()
