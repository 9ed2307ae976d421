"""One event must not stop the audit trail. Every producer (the policy decision log, the
sandbox, evolution) writes to ACGS's one audit outbox and the one relay delivers it to a real
audit service over HTTP; each is handed an event the service refuses (past a field cap, past
the body limit) or that used to make the producer drop the decision. Later events of every
producer still reach the log, each refused event is in its outbox's dead-letter table and
accounted for in the chain by a ``delivery_rejected`` event carrying its digest and size, and an
event acknowledged to an outbox survives a restart of its producer.

Before the fix, each producer retried a refused event forever (the sandbox and evolution relays,
the decision log in async mode) and every event behind it waited with it; a decision input with
a non-object ``context`` was dropped from the log. Before the one outbox, the decision log kept
its queue and its dead letters in memory: a decision event queued when the policy service
stopped was lost, and evolution only marked a refused row."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from acgs.audit.decision_log import DecisionLog
from acgs.audit.outbox import OutboxRelay, SqliteOutbox, sqlite_append
from acgs.audit.sink import BlockingHttpAuditSink, HttpAuditSink
from acgs.services.audit import AuditSettings, create_app
from acgs.services.sandbox.store import ExecutionStore, OutboxAuditSink
from tests.services.audit_helpers import PRIVATE_KEY
from tests.services.conftest import ServerThread

#: The audit service's body limit in these tests: small, so that a 100 KB event is refused.
MAX_BODY = 64 * 1024
WITHIN = 20.0


def _sandbox_event(agent: str, note: str, **meta: Any) -> dict[str, Any]:
    return {
        "event_type": "sandbox_execution",
        "agent_id": agent,
        "action": "sandbox.execute",
        "result": "completed",
        "metadata": {"execution_id": note, **meta},
        "decision_id": f"dec-{note}",
    }


def _events(url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = -1
    while True:
        page = httpx.get(f"{url}/audit/events", params={"after": after, "limit": 1000}).json()
        out += [e["event"] for e in page["events"]]
        if page["next_after"] is None:
            return out
        after = page["next_after"]


def _wait_for(url: str, want: set[str], key: Any) -> list[dict[str, Any]]:
    """Waits (at most ``WITHIN`` seconds) until every marker in ``want`` is in the log."""
    deadline = time.monotonic() + WITHIN
    while True:
        events = _events(url)
        seen = {key(e) for e in events}
        if want <= seen or time.monotonic() > deadline:
            assert want <= seen, f"missing from the audit log: {sorted(want - seen)}"
            return events
        time.sleep(0.1)


@pytest.fixture
def audit_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ACGS_AUDIT_SIGNING_KEY", PRIVATE_KEY)
    settings = AuditSettings(data_dir=tmp_path / "audit", checkpoint_interval=0, max_body=MAX_BODY)
    with ServerThread(create_app(settings)) as server:
        yield f"http://127.0.0.1:{server.port}"


def _marker(e: dict[str, Any]) -> str:
    meta = e.get("metadata") or {}
    if e["event_type"] == "delivery_rejected":
        return f"rejected:{meta.get('producer')}:{e.get('decision_id')}"
    if e["event_type"] == "policy_decision":
        return f"policy:{e['decision_id']}"
    if e["event_type"] == "sandbox_execution":
        return f"sandbox:{meta.get('execution_id')}"
    return f"evolution:{meta.get('request_id')}:{e['action']}"


@contextlib.asynccontextmanager
async def evolution_service(db: Path, data_dir: Path, sink: HttpAuditSink) -> AsyncIterator[Any]:
    """The evolution service, its lifespan entered (so its outbox relay runs), delivering to
    ``sink``, with a client on its own loopback name."""
    from acgs.services.evolution import EvolutionSettings
    from acgs.services.evolution import create_app as evolution_app
    from tests.services.test_evolution_service import Service

    settings = EvolutionSettings(data_dir=data_dir, database_url=f"sqlite:///{db}", sweep_interval=3600.0, relay_interval=0.05)
    app = evolution_app(settings, audit_sink=sink)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield Service(app, client)


def _insert_raw(db: Path, producer: str, event: dict[str, Any]) -> None:
    """An outbox row as a producer without field caps wrote it."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        sqlite_append(conn, producer, [event])
    finally:
        conn.close()


def _sandbox_relay(store: ExecutionStore, url: str) -> OutboxRelay:
    return OutboxRelay(store.outbox, BlockingHttpAuditSink(url), interval=0.05, retry=0.05, max_backoff=0.2)


def test_refused_events_of_every_producer_do_not_block_the_others(audit_url: str, tmp_path: Path) -> None:
    from tests.services.test_evolution_service import MINOR

    # -- sandbox: an oversized agent id (capped before queuing now) and an outbox row past the
    # body limit written raw, as before the caps.
    store = ExecutionStore(tmp_path / "sandbox.sqlite3")
    OutboxAuditSink(store).record(_sandbox_event("a" * 600, "long-agent"))  # type: ignore[arg-type]
    raw = _sandbox_event("agent-7", "huge", blob="x" * 100_000)
    _insert_raw(tmp_path / "sandbox.sqlite3", "sandbox", raw)
    OutboxAuditSink(store).record(_sandbox_event("agent-7", "after"))  # type: ignore[arg-type]
    relay = _sandbox_relay(store, audit_url)
    relay.start_thread()
    policy_dead: list[dict[str, Any]] = []

    async def policy_and_evolution() -> None:
        # -- policy: a decision whose event is past the body limit (kept whole: under the field
        # caps), one whose input is too large to keep whole, one whose input has a context that
        # is not an object, then an ordinary one.
        sink = HttpAuditSink(audit_url)
        dlog = DecisionLog(sink, include_input="full", max_backoff=0.2, outbox=SqliteOutbox.open(tmp_path / "dlog.sqlite3", "policy"))
        await dlog.offer("dec-p-big", "acgs/main", json.dumps({"action": "x", "pad": "y" * 100_000}).encode(), {"allow": False}, None)
        await dlog.offer("dec-p-huge", "acgs/main", json.dumps({"action": "x", "pad": "y" * 400_000}).encode(), {"allow": False}, None)
        await dlog.offer("dec-p-shape", "acgs/main", b'{"action": "x", "context": "not an object"}', {"allow": True}, None)
        await dlog.offer("dec-p-after", "acgs/main", b'{"action": "read"}', {"allow": True}, None)
        # -- evolution: an outbox row with a field past the audit log's cap, then a real request.
        evo_db = tmp_path / "evo.sqlite3"
        try:
            async with evolution_service(evo_db, tmp_path / "evo", sink) as svc:
                _insert_raw(evo_db, "evolution", {
                    "event_type": "evolution_transition", "agent_id": "b" * 600, "action": "evolution.submit",
                    "result": "pending", "metadata": {"request_id": "legacy"}, "decision_id": "dec-e-legacy",
                    "constitutional_hash": "cdd01ef066bc6cf2",
                })  # fmt: skip
                out = await svc.submit(MINOR)
                request_id = out["request_id"]
                await asyncio.to_thread(_wait_for, audit_url, {
                    f"evolution:{request_id}:evolution.submit", f"evolution:{request_id}:evolution.auto_approve",
                    "rejected:evolution:dec-e-legacy",
                }, _marker)  # fmt: skip
                # The audit service holds the events a moment before the relay settles them.
                for _ in range(500):
                    rows = await svc.store.outbox(pending_only=False, limit=100)
                    if all(r.delivered_at is not None for r in rows):
                        break
                    await asyncio.sleep(0.02)
                dead = await svc.store.dead_letters()
                assert [d["event"]["decision_id"] for d in dead] == ["dec-e-legacy"]
                assert dead[0]["event"]["agent_id"] == "b" * 600 and dead[0]["reason"].startswith("audit service answered 422")
                # The stand-in holds the refused event's place in the order.
                assert dead[0]["replacement"]["event_type"] == "delivery_rejected"
                assert [r.event for r in rows if r.id == dead[0]["seq"]] == [dead[0]["replacement"]]
                assert all(r.delivered_at is not None for r in rows)
        finally:
            await asyncio.to_thread(
                _wait_for, audit_url, {"policy:dec-p-after", "policy:dec-p-shape", "policy:dec-p-huge", "rejected:policy:dec-p-big"}, _marker
            )
            assert dlog.rejected == 1 and dlog.dropped == 0
            policy_dead.extend(await dlog.dead_letters())
            await dlog.close()
            await sink.aclose()

    try:
        asyncio.run(policy_and_evolution())
        events = _wait_for(audit_url, {"sandbox:long-agent", "sandbox:after", "rejected:sandbox:dec-huge"}, _marker)
    finally:
        relay.close()
    by = {_marker(e): e for e in events}
    # The refused events are accounted for: digest and size of the bytes that were sent.
    rejected = by["rejected:sandbox:dec-huge"]["metadata"]
    sent = orjson.dumps(raw)
    assert rejected["rejected_size"] == len(sent) and rejected["reason"].startswith("audit service answered 413")
    assert rejected["rejected_event_type"] == "sandbox_execution" and rejected["producer"] == "sandbox"
    assert rejected["rejected_sha256"] == hashlib.sha256(sent).hexdigest()
    assert store.dead_letters()[0]["event"]["metadata"]["blob"] == "x" * 100_000
    assert store.dead_letters()[0]["replacement"]["metadata"]["rejected_sha256"] == rejected["rejected_sha256"]
    assert [d["event"]["decision_id"] for d in policy_dead] == ["dec-p-big"]
    assert policy_dead[0]["replacement"]["metadata"] == by["rejected:policy:dec-p-big"]["metadata"]
    assert by["rejected:evolution:dec-e-legacy"]["metadata"]["reason"].startswith("audit service answered 422")
    # Capped, not refused: the long agent id is cut to the audit log's 512 characters.
    assert len(by["sandbox:long-agent"]["agent_id"]) == 512
    # The huge decision input is logged by digest; the odd-shaped one is logged at all.
    huge = by["policy:dec-p-huge"]["metadata"]
    assert huge["input_truncated"] is True and "input" not in huge and len(huge["input_sha256"]) == 64
    assert by["policy:dec-p-shape"]["metadata"]["input"]["context"] == "not an object"
    # Order is kept within each producer: the refused event's stand-in comes before what followed.
    order = [_marker(e) for e in events]
    assert order.index("rejected:sandbox:dec-huge") < order.index("sandbox:after")
    assert order.index("rejected:policy:dec-p-big") < order.index("policy:dec-p-after")
    assert httpx.post(f"{audit_url}/audit/verify").json()["ok"]
    store.close()


def test_a_transient_failure_is_retried_in_order_not_dead_lettered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5xx or an unreachable service is not a refusal: the event stays pending and goes,
    in order, once the service answers."""
    monkeypatch.setenv("ACGS_AUDIT_SIGNING_KEY", PRIVATE_KEY)
    store = ExecutionStore(tmp_path / "sandbox.sqlite3")
    OutboxAuditSink(store).record(_sandbox_event("agent-1", "first"))  # type: ignore[arg-type]
    OutboxAuditSink(store).record(_sandbox_event("agent-1", "second"))  # type: ignore[arg-type]
    server = ServerThread(create_app(AuditSettings(data_dir=tmp_path / "audit", checkpoint_interval=0)))
    url = f"http://127.0.0.1:{server.port}"
    relay = _sandbox_relay(store, url)
    # Not listening yet: a transient failure, recorded on the event that failed.
    with pytest.raises(Exception, match="unreachable"):
        asyncio.run(relay.deliver_once())
    assert len(store.pending_events()) == 2 and store.dead_letters() == []
    with server:
        assert asyncio.run(relay.deliver_once()) == 2
        events = _events(url)
    assert [e["metadata"]["execution_id"] for e in events] == ["first", "second"]
    assert store.pending_events() == [] and store.dead_letters() == []
    store.close()


def test_producers_fit_events_to_the_log_before_queuing() -> None:
    """What every producer applies before queuing: an event that fits comes back unchanged; one
    that does not is cut or digested (never dropped) and then accepted by the audit log."""
    from acgs.audit.delivery import fit_event
    from acgs.audit.events import prepare

    ok = _sandbox_event("agent-1", "fine", limits={"cpu": 1.5})
    assert fit_event(ok) == ok
    bad = {
        "event_type": "sandbox_execution",
        "agent_id": "a" * 2000,
        "action": "",
        "result": 7,
        "decision_id": "d" * 600,
        "metadata": {"nan": float("nan"), "big": 2**80, "blob": "x" * 400_000, "idempotency_key": "k-1", "ok": 1},
    }
    fitted = fit_event(bad)
    prepare(fitted, ts_us=0)  # the audit log's own checks: accepted
    meta = fitted["metadata"]
    assert len(fitted["agent_id"]) == 512 and fitted["action"] == "unknown" and fitted["result"] == "unknown"
    assert meta["idempotency_key"] == "k-1" and meta["ok"] == 1
    assert meta["blob"]["size"] == 400_002 and len(meta["blob"]["sha256"]) == 64
    assert {"agent_id", "metadata.blob", "metadata.nan"} <= set(meta["truncated"])


def test_sync_decision_log_answers_a_refused_decision_once_its_stand_in_is_durable(audit_url: str) -> None:
    """In ``sync`` mode a decision is answered only once the log holds it; a decision whose
    event the log refuses is answered once its ``delivery_rejected`` event is durable, and the
    decisions sharing its batch are logged as usual."""

    async def scenario() -> DecisionLog:
        sink = HttpAuditSink(audit_url)
        dlog = DecisionLog(sink, include_input="full", mode="sync")
        try:
            await asyncio.gather(
                dlog.offer("dec-s-big", "acgs/main", json.dumps({"action": "x", "pad": "y" * 100_000}).encode(), {"allow": False}, None),
                dlog.offer("dec-s-ok", "acgs/main", b'{"action": "read"}', {"allow": True}, None),
            )
        finally:
            await dlog.close()
            await sink.aclose()
        return dlog

    dlog = asyncio.run(scenario())
    assert dlog.rejected == 1 and dlog.unacknowledged == 0
    markers = {_marker(e) for e in _events(audit_url)}
    assert {"rejected:policy:dec-s-big", "policy:dec-s-ok"} <= markers
