"""The audit service killed with SIGKILL 20 times during a stream of appends, on SQLite and on
PostgreSQL: a client records every acknowledged event; afterwards each one is stored at the
index and with the hash it was acknowledged with, and the whole chain verifies."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.audit_helpers import AuditProcess, event, service_env
from tests.services.conftest import free_port

KILLS = 20


def _stream(base: str, acked: dict[str, tuple[int, str]], seq: itertools.count[int], stop: threading.Event) -> None:
    """Appends from 8 concurrent connections (single events and small batches) until the
    service dies or ``stop`` is set; records each acknowledgement."""

    async def worker(client: httpx.AsyncClient, batch: bool) -> None:
        while not stop.is_set():
            try:
                if batch:
                    items = [event(next(seq)) for _ in range(5)]
                    r = await client.post(f"{base}/audit/events", json=items)
                    receipts = r.json()["receipts"] if r.status_code == 200 else None
                else:
                    r = await client.post(f"{base}/audit/event", json=event(next(seq)))
                    receipts = [r.json()] if r.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return  # the service is gone; what it acknowledged is recorded
            assert receipts is not None, f"append refused: {r.status_code} {r.text}"
            for x in receipts:
                acked[x["event_id"]] = (x["index"], x["hash"])

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            await asyncio.gather(*(worker(client, batch=i % 4 == 0) for i in range(8)))

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_loses_no_acknowledged_event(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_database") if backend == "postgres" else f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    proc = AuditProcess(free_port(), service_env(tmp_path, url), tmp_path / "service.log")
    acked: dict[str, tuple[int, str]] = {}
    seq = itertools.count()
    rng = random.Random(4)
    per_round: list[int] = []
    try:
        for _ in range(KILLS):
            proc.start()
            before = len(acked)
            stop = threading.Event()
            client = threading.Thread(target=_stream, args=(proc.url, acked, seq, stop))
            client.start()
            # Kill mid-stream: once appends are flowing, at a random moment.
            deadline = time.monotonic() + 20
            while len(acked) - before < 3 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
            proc.kill9()
            stop.set()
            client.join(30)
            assert not client.is_alive()
            per_round.append(len(acked) - before)
        proc.start()
        stored: dict[str, tuple[int, str]] = {}
        after = -1
        while True:
            page: dict[str, Any] = httpx.get(f"{proc.url}/audit/events", params={"after": after, "limit": 1000}).json()
            for e in page["events"]:
                stored[e["event"]["event_id"]] = (e["index"], e["hash"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
        report = httpx.post(f"{proc.url}/audit/verify", timeout=60).json()
    finally:
        proc.stop()
    assert all(n > 0 for n in per_round), per_round
    missing = [eid for eid in acked if eid not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert all(stored[eid] == acked[eid] for eid in acked), "an acknowledged event moved or changed"
    assert report["ok"], report
    assert report["checked"] == len(stored) == max(i for i, _ in stored.values()) + 1
