"""The audit log streamed to a real Kafka broker (KRaft, started here from Maven Central jars):
every event published in order with its hashes in headers, and after a broker outage
(SIGKILL, events appended meanwhile) publishing resumes from the durable cursor and nothing is
lost."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acgs.audit.stream import KafkaPublisher, StreamRelay
from tests.services.audit_helpers import event, make_log
from tests.services.kafka import KafkaBroker

TOPIC = "constitutional-events"


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    root = tmp_path / "kafka"
    root.mkdir()
    try:
        broker = KafkaBroker(root)
        broker.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        pytest.fail(f"could not start a throwaway Kafka broker: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


async def _consume(bootstrap: str, want: int, timeout: float = 60.0) -> list[tuple[dict[str, bytes], bytes]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[dict[str, bytes], bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len({h["acgs-event-id"] for h, _ in out}) < want and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend((dict(m.headers), m.value) for m in messages)
    finally:
        await consumer.stop()
    return out


def test_stream_survives_a_broker_outage(tmp_path: Path, kafka: KafkaBroker) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"

    async def go() -> list[str]:
        log = make_log(url)
        await log.open()
        publisher = KafkaPublisher(kafka.bootstrap, TOPIC, request_timeout_ms=3000, publish_timeout=3.0)
        relay = StreamRelay(log.store, publisher, interval=0.1, max_backoff=1.0, batch=64)
        try:
            first = await log.append([event(i) for i in range(150)])
            assert await relay.deliver_once() == 150
            assert await log.store.cursor(relay.name) == 150
            await asyncio.to_thread(kafka.stop)
            second = await log.append([event(i) for i in range(150, 300)])
            with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a dead broker
                await relay.deliver_once()
            assert await log.store.cursor(relay.name) == 150, "the cursor moved without an acknowledgement"
            task = asyncio.create_task(relay.run())
            await asyncio.sleep(1.0)
            await asyncio.to_thread(kafka.start)
            deadline = time.monotonic() + 90
            while await log.store.cursor(relay.name) < 300 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert await log.store.cursor(relay.name) == 300
            return [a.event_id for a in first + second]
        finally:
            await publisher.close()
            await log.close()

    ids = asyncio.run(go())
    messages = asyncio.run(_consume(kafka.bootstrap, len(ids)))
    seen: dict[str, int] = {}
    for headers, value in messages:
        eid = headers["acgs-event-id"].decode()
        assert headers["acgs-hash"] == b"sha256:" + hashlib.sha256(value).hexdigest().encode()
        seen.setdefault(eid, int(headers["acgs-index"]))
    assert set(seen) == set(ids), f"{len(set(ids) - set(seen))} events never reached the broker"
    # In log order (one partition): first deliveries come by increasing index.
    firsts = list(seen.values())
    assert firsts == sorted(firsts) == list(range(300))
