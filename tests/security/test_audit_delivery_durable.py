"""ACGS's one audit outbox: an event a producer acknowledged to its outbox survives a restart of
the producer before delivery, reaches a real audit service in the order it was written, and a
refused one is in the dead-letter table with its ``delivery_rejected`` stand-in in the chain,
for every producer (policy decision log, sandbox, evolution on SQLite and PostgreSQL).

Before the one outbox, the decision log queued in memory: the decisions of a policy service
that stopped while the audit service was down were counted as dropped and never logged (the
first two tests fail there: 0 of them reach the log)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from acgs.audit.decision_log import DecisionLog
from acgs.audit.outbox import OutboxRelay, SqliteOutbox
from acgs.audit.sink import BlockingHttpAuditSink, HttpAuditSink
from acgs.services.audit import AuditSettings
from acgs.services.audit import create_app as audit_app
from acgs.services.sandbox.store import ExecutionStore, OutboxAuditSink
from tests.security.test_audit_delivery import MAX_BODY, _events, _marker, _sandbox_event, _wait_for
from tests.services.audit_helpers import PRIVATE_KEY
from tests.services.conftest import ServerThread


@pytest.fixture
def audit_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    """An audit service, not started yet: the producers first run while it is down."""
    monkeypatch.setenv("ACGS_AUDIT_SIGNING_KEY", PRIVATE_KEY)
    return ServerThread(audit_app(AuditSettings(data_dir=tmp_path / "audit", checkpoint_interval=0, max_body=MAX_BODY)))


def _url(server: ServerThread) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_decision_events_in_the_outbox_survive_a_restart_of_the_decision_log(audit_server: ServerThread, tmp_path: Path) -> None:
    outbox_path = tmp_path / "decision-outbox.sqlite3"
    url = _url(audit_server)

    async def before() -> DecisionLog:
        sink = HttpAuditSink(url)
        dlog = DecisionLog(sink, include_input="full", max_backoff=0.2, outbox=SqliteOutbox.open(outbox_path, "policy"))
        for i in range(40):
            await dlog.offer(f"dec-{i:02d}", "acgs/main", json.dumps({"action": "read", "n": i}).encode(), {"allow": True}, None)
        # One the audit log will refuse, then more behind it.
        await dlog.offer("dec-big", "acgs/main", json.dumps({"action": "x", "pad": "y" * 100_000}).encode(), {"allow": False}, None)
        for i in range(40, 50):
            await dlog.offer(f"dec-{i:02d}", "acgs/main", b'{"action": "read"}', {"allow": True}, None)
        await dlog.close(timeout=5)
        await sink.aclose()
        return dlog

    first = asyncio.run(before())
    # The audit service was down: nothing was delivered, nothing was lost.
    assert first.written == 0 and first.dropped == 0 and first.failures >= 1
    with sqlite3.connect(outbox_path) as conn:
        assert conn.execute("SELECT count(*) FROM acgs_outbox WHERE delivered_at IS NULL").fetchone()[0] == 51

    want = [f"dec-{i:02d}" for i in range(40)] + ["dec-big"] + [f"dec-{i:02d}" for i in range(40, 50)]

    async def after() -> tuple[DecisionLog, list[dict[str, Any]]]:
        sink = HttpAuditSink(url)
        dlog = DecisionLog(sink, max_backoff=0.2, relay_interval=0.05, outbox=SqliteOutbox.open(outbox_path, "policy"))
        dlog.start()
        wanted = {f"policy:{d}" for d in want if d != "dec-big"} | {"rejected:policy:dec-big"}
        await asyncio.to_thread(_wait_for, url, wanted, _marker)
        dead = await dlog.dead_letters()
        await dlog.close()
        await sink.aclose()
        return dlog, dead

    with audit_server:
        second, dead = asyncio.run(after())
        events = _events(url)
        assert httpx.post(f"{url}/audit/verify").json()["ok"]
    # In the order they were decided, the refused one's stand-in in its place.
    assert [e["decision_id"] for e in events] == want
    assert events[40]["event_type"] == "delivery_rejected"
    assert second.written == 50 and second.rejected == 1
    assert [d["event"]["decision_id"] for d in dead] == ["dec-big"]
    assert dead[0]["replacement"]["metadata"] == events[40]["metadata"]


def test_policy_service_decisions_survive_a_restart_while_the_audit_service_is_down(
    audit_server: ServerThread, tmp_path: Path
) -> None:
    """Through the policy service's own wiring (the outbox under its data directory)."""
    from acgs import SEED_REQUEST
    from acgs.services.policy import PolicySettings
    from acgs.services.policy import create_app as policy_app

    url = _url(audit_server)
    settings = PolicySettings(data_dir=tmp_path / "policy", decision_log=url, cache_size=0)
    ids: list[str] = []
    with ServerThread(policy_app(settings)) as policy:
        for _ in range(5):
            r = httpx.post(f"http://127.0.0.1:{policy.port}/v1/data/acgs/main/decision", json=SEED_REQUEST)
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
    assert list((tmp_path / "policy" / "decision-outbox").glob("*.sqlite3"))
    with audit_server, ServerThread(policy_app(settings)):
        events = _wait_for(url, {f"policy:{i}" for i in ids}, _marker)
    assert [e["decision_id"] for e in events if e["event_type"] == "policy_decision"] == ids


def test_sandbox_events_survive_a_restart_and_keep_their_order(audit_server: ServerThread, tmp_path: Path) -> None:
    db = tmp_path / "sandbox.sqlite3"
    store = ExecutionStore(db)
    for i in range(5):
        OutboxAuditSink(store).record(_sandbox_event("agent-1", f"run-{i}"))  # type: ignore[arg-type]
    store.close()

    store = ExecutionStore(db)
    assert [e["metadata"]["execution_id"] for _, e in store.pending_events()] == [f"run-{i}" for i in range(5)]
    relay = OutboxRelay(store.outbox, BlockingHttpAuditSink(_url(audit_server)), interval=0.05, retry=0.05, max_backoff=0.2)
    with audit_server:
        relay.start_thread()
        try:
            events = _wait_for(_url(audit_server), {f"sandbox:run-{i}" for i in range(5)}, _marker)
            # The audit service holds them a moment before the relay has settled its rows:
            # closing the relay in between would leave them to be delivered again next start.
            deadline = time.monotonic() + 10
            while relay.delivered < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            relay.close()
    assert [e["metadata"]["execution_id"] for e in events] == [f"run-{i}" for i in range(5)]
    assert store.pending_events() == [] and relay.delivered == 5
    store.close()


def test_a_sandbox_database_from_before_the_shared_outbox_keeps_its_pending_events(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        "CREATE TABLE audit_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,"
        " created_at REAL NOT NULL, decision_id TEXT NOT NULL, event TEXT NOT NULL, delivered_at REAL);"
        "CREATE TABLE audit_dead_letters (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, created_at REAL NOT NULL,"
        " rejected_at REAL NOT NULL, decision_id TEXT NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL);"
    )
    for i, delivered in enumerate([1.0, None, None]):
        event = _sandbox_event("agent-1", f"old-{i}")
        conn.execute(
            "INSERT INTO audit_outbox (event_id, created_at, decision_id, event, delivered_at) VALUES (?, ?, ?, ?, ?)",
            (f"evt_{i}", time.time(), event["decision_id"], json.dumps(event), delivered),
        )
    conn.close()
    store = ExecutionStore(db)
    assert [e["metadata"]["execution_id"] for _, e in store.pending_events()] == ["old-1", "old-2"]
    assert store.events_for("dec-old-0")[0]["metadata"]["execution_id"] == "old-0"
    store.close()


@contextlib.asynccontextmanager
async def _evolution(database_url: str, data_dir: Path, sink: Any) -> AsyncIterator[Any]:
    from acgs.services.evolution import EvolutionSettings
    from acgs.services.evolution import create_app as evolution_app
    from tests.services.test_evolution_service import Service

    settings = EvolutionSettings(data_dir=data_dir, database_url=database_url, sweep_interval=3600.0, relay_interval=0.05)
    app = evolution_app(settings, audit_sink=sink)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield Service(app, client)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_evolution_events_survive_a_restart_and_a_refused_one_is_dead_lettered(
    audit_server: ServerThread, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    from tests.services.test_evolution_service import MINOR, body

    database_url = (
        f"sqlite:///{tmp_path / 'evo.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("postgres_database")
    )
    url = _url(audit_server)

    async def scenario() -> None:
        # No audit sink: the events wait in the outbox, committed with their transitions.
        async with _evolution(database_url, tmp_path / "evo", None) as svc:
            first = await svc.submit(MINOR)
            # An event the audit log refuses (past its agent id cap), as a producer without
            # caps wrote it, then another request behind it.
            refused = {
                "event_type": "evolution_transition", "agent_id": "b" * 600, "action": "evolution.submit",
                "result": "pending", "metadata": {"request_id": "legacy"}, "decision_id": "dec-e-legacy",
            }  # fmt: skip
            await _append_raw(svc.store, refused)
            second = await svc.submit(body(type="configuration"))
            assert len(await svc.store.outbox(pending_only=True, limit=100)) == 4
        sink = HttpAuditSink(url)
        try:
            async with _evolution(database_url, tmp_path / "evo", sink) as svc:
                want = {
                    f"evolution:{first['request_id']}:evolution.submit", f"evolution:{first['request_id']}:evolution.auto_approve",
                    "rejected:evolution:dec-e-legacy", f"evolution:{second['request_id']}:evolution.submit",
                }  # fmt: skip
                events = await asyncio.to_thread(_wait_for, url, want, _marker)
                for _ in range(100):
                    if not await svc.store.outbox(pending_only=True, limit=10):
                        break
                    await asyncio.sleep(0.05)
                dead = await svc.store.dead_letters()
                rows = await svc.store.outbox(pending_only=False, limit=100)
        finally:
            await sink.aclose()
        assert [_marker(e) for e in events] == [
            f"evolution:{first['request_id']}:evolution.submit",
            f"evolution:{first['request_id']}:evolution.auto_approve",
            "rejected:evolution:dec-e-legacy",
            f"evolution:{second['request_id']}:evolution.submit",
        ]
        assert [d["event"]["agent_id"] for d in dead] == ["b" * 600]
        assert dead[0]["replacement"]["metadata"] == events[2]["metadata"]
        assert all(r.delivered_at is not None for r in rows)

    with audit_server:
        asyncio.run(scenario())
        assert httpx.post(f"{url}/audit/verify").json()["ok"]


async def _append_raw(store: Any, event: dict[str, Any]) -> None:
    """Appends ``event`` uncapped to the store's outbox through the shared statements."""
    from acgs.audit.outbox import postgres_append, sqlite_append

    if hasattr(store, "_require_pool"):
        async with store._require_pool().acquire() as conn, conn.transaction():
            await postgres_append(conn, "evolution", [event], time.time())
    else:
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            sqlite_append(conn, "evolution", [event])
        finally:
            conn.close()
