"""The audit log as a stream: every event published to Kafka (or Redpanda), topic
``constitutional-events`` by default, at least once and in log order.

The log itself is the outbox: it is append-only and ordered by index, so the relay only keeps a
durable cursor (``audit_cursors``, the next index not yet published) next to the events. It
reads events from the cursor, publishes them and waits for the broker's acknowledgement
(``acks=all``), and only then moves the cursor. A broker outage stops the cursor; when the
broker is back, publishing resumes where it stopped. A crash between the broker's
acknowledgement and the cursor's move publishes those events again, so consumers deduplicate on
the ``acgs-event-id`` header (or the payload's ``event_id``).

Each message: value = the event's canonical payload (the bytes its hash covers), key = its
``agent_id`` (per-agent order within a partition), headers ``acgs-index``, ``acgs-event-id``,
``acgs-hash`` and ``acgs-chain-hash``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from acgs.audit.events import StoredEvent
from acgs.audit.store import AuditStore
from acgs.errors import AuditIntegrityError

log = logging.getLogger("acgs.audit")

DEFAULT_TOPIC = "constitutional-events"


class StreamPublisher(Protocol):
    async def publish(self, events: Sequence[StoredEvent]) -> None:
        """Returns once the broker acknowledged every event; raises otherwise."""

    async def close(self) -> None: ...


def message_of(event: StoredEvent) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one event."""
    agent = orjson.loads(event.payload).get("agent_id", "")
    headers = [
        ("acgs-index", str(event.index).encode()),
        ("acgs-event-id", event.event_id.encode()),
        ("acgs-hash", b"sha256:" + event.content_hash.hex().encode()),
        ("acgs-chain-hash", b"sha256:" + event.chain_hash.hex().encode()),
    ]
    return str(agent).encode(), event.payload, headers


class KafkaPublisher:
    """Publishes through aiokafka with an idempotent producer and ``acks=all``. A failed publish
    drops the producer; the next one connects afresh."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = DEFAULT_TOPIC,
        *,
        request_timeout_ms: int = 15_000,
        publish_timeout: float = 30.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.request_timeout_ms = request_timeout_ms
        #: The idempotent producer retries a dead broker without end; a batch not acknowledged
        #: by then fails, so the relay backs off and starts again from its cursor.
        self.publish_timeout = publish_timeout
        self._producer: Any = None

    async def _connected(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=self.request_timeout_ms,
                linger_ms=5,
            )
            try:
                await asyncio.wait_for(producer.start(), self.publish_timeout)
            except BaseException:
                await self._stop(producer)
                raise
            self._producer = producer
        return self._producer

    async def publish(self, events: Sequence[StoredEvent]) -> None:
        producer = await self._connected()

        async def send_all() -> None:
            pending = []
            for event in events:
                key, value, headers = message_of(event)
                pending.append(await producer.send(self.topic, value=value, key=key, headers=headers))
            await asyncio.gather(*pending)

        try:
            await asyncio.wait_for(send_all(), self.publish_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop(producer)

    async def _stop(self, producer: Any) -> None:
        try:
            # Stopping flushes; against a dead broker that would wait for ever.
            await asyncio.wait_for(producer.stop(), 5.0)
        except Exception:
            log.debug("stopping the Kafka producer failed", exc_info=True)


class StreamRelay:
    """Publishes the log from its durable cursor, in order; retries with backoff."""

    def __init__(
        self,
        store: AuditStore,
        publisher: StreamPublisher,
        *,
        name: str = "stream:kafka",
        batch: int = 500,
        interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.name = name
        self.batch = batch
        self.interval = interval
        self.max_backoff = max_backoff
        self.published = 0
        self.failures = 0

    async def deliver_once(self) -> int:
        """Publishes everything past the cursor; returns how many events were published."""
        delivered = 0
        while True:
            start = await self.store.cursor(self.name)
            size = await self.store.size()
            if start >= size:
                return delivered
            rows = await self.store.read(start, min(size, start + self.batch))
            contiguous: list[StoredEvent] = []
            for expected, row in enumerate(rows, start):
                if row.index != expected:
                    break
                contiguous.append(row)
            if not contiguous:
                raise AuditIntegrityError(f"event {start} is missing from the store; the stream cannot pass it")
            await self.publisher.publish(contiguous)
            await self.store.advance_cursor(self.name, contiguous[-1].index + 1)
            delivered += len(contiguous)
            self.published += len(contiguous)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.deliver_once()
                failures = 0
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.failures += 1
                delay = min(self.max_backoff, self.interval * 2 ** min(failures, 16))
                log.warning("audit stream: publishing failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
