"""The audit service's HTTP API in-process (FastAPI's TestClient runs the lifespan): the seed's
POST /audit/event, 422s, batches, queries, proofs checked with the Rust verifiers, consistency,
verify, health, metrics; the sinks the other services use; and the command line against a log
the service wrote."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from acgs import _acgs as core
from acgs.audit.sink import AuditDeliveryError, HttpAuditSink, LocalAuditSink
from acgs.services.audit import AuditSettings, create_app
from tests.services.audit_helpers import PRIVATE_KEY, REPO, VERIFIER_KEY, event, make_log, service_env
from tests.services.conftest import ServerThread

SEED_EVENT = {
    "event_type": "constitutional_validation",
    "agent_id": "agent-42",
    "action": "data.read_public",
    "result": "allowed",
    "metadata": {"compliance_score": 0.96, "session_id": "sess_123456"},
}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditSettings:
    monkeypatch.setenv("ACGS_AUDIT_SIGNING_KEY", PRIVATE_KEY)
    return AuditSettings(data_dir=tmp_path, checkpoint_interval=0)


@pytest.fixture
def client(settings: AuditSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def test_seed_event_is_acknowledged_with_its_sha256(client: TestClient) -> None:
    r = client.post("/audit/event", json=SEED_EVENT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ingested"] is True and body["index"] == 0
    assert body["event_id"].startswith("evt_") and body["timestamp"].endswith("Z")
    stored = client.get(f"/audit/events/{body['event_id']}").json()
    canonical = core.canonical_json(stored["event"])
    assert body["hash"] == "sha256:" + core.event_hashes(b"\0" * 32, canonical)[0].hex()
    assert stored["event"]["metadata"] == SEED_EVENT["metadata"]
    # With optional fields.
    r = client.post("/audit/event", json={**SEED_EVENT, "decision_id": "d-1", "constitutional_hash": "cdd01ef066bc6cf2"})
    assert r.status_code == 200 and r.json()["index"] == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**SEED_EVENT, "agent_id": ""}, "agent_id"),
        ({k: v for k, v in SEED_EVENT.items() if k != "result"}, "result: Field required"),
        ({**SEED_EVENT, "metadata": "x"}, "metadata"),
        ({**SEED_EVENT, "extra": 1}, "extra"),
        ({**SEED_EVENT, "action": 5}, "action"),
        ({**SEED_EVENT, "metadata": {"n": 2**60}}, "number_out_of_range"),
        ([SEED_EVENT], "body"),
    ],
)
def test_bad_events_get_422_with_a_clear_message(client: TestClient, body: Any, fragment: str) -> None:
    r = client.post("/audit/event", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_event" and fragment in r.json()["message"]


def test_batch_is_all_or_nothing(client: TestClient) -> None:
    r = client.post("/audit/events", json=[event(i) for i in range(5)])
    assert r.status_code == 200
    assert [x["index"] for x in r.json()["receipts"]] == [0, 1, 2, 3, 4]
    r = client.post("/audit/events", json=[event(5), {**event(6), "metadata": {"x": 2**70}}])
    assert r.status_code == 422 and r.json()["message"].startswith("event 1:")
    assert client.post("/audit/events", json=[]).status_code == 422
    assert client.get("/health").json()["size"] == 5


def test_query_filters_and_pages(client: TestClient) -> None:
    client.post("/audit/events", json=[event(i) for i in range(30)])
    page = client.get("/audit/events", params={"agent_id": "agent-3", "limit": 2}).json()
    assert [e["event"]["metadata"]["seq"] for e in page["events"]] == [3, 10]
    page2 = client.get("/audit/events", params={"agent_id": "agent-3", "limit": 2, "after": page["next_after"]}).json()
    assert [e["event"]["metadata"]["seq"] for e in page2["events"]] == [17, 24]
    assert client.get("/audit/events", params={"decision_id": "dec-7"}).json()["events"][0]["index"] == 7
    assert len(client.get("/audit/events", params={"event_type": "nope"}).json()["events"]) == 0
    ts = client.get("/audit/events", params={"limit": 1}).json()["events"][0]["event"]["timestamp"]
    assert len(client.get("/audit/events", params={"since": ts, "limit": 100}).json()["events"]) == 30
    assert len(client.get("/audit/events", params={"until": ts}).json()["events"]) == 0
    assert client.get("/audit/events", params={"since": "yesterday"}).status_code == 422


def test_proofs_checkpoints_and_verify(client: TestClient) -> None:
    assert client.get("/audit/checkpoint").status_code == 404
    receipts = client.post("/audit/events", json=[event(i) for i in range(20)]).json()["receipts"]
    cp = client.get("/audit/checkpoint").json()
    assert cp["size"] == 20 and cp["verifier_key"] == VERIFIER_KEY
    origin, size, root = core.verify_checkpoint(cp["checkpoint"], VERIFIER_KEY)
    assert (size, root.hex()) == (20, cp["root"])
    client.post("/audit/events", json=[event(i) for i in range(20, 33)])
    # An event newer than the latest checkpoint gets a fresh one.
    late = client.post("/audit/event", json=event(33)).json()
    got = client.get(f"/audit/events/{late['event_id']}").json()
    proof = got["proof"]
    assert proof["tree_size"] == 34
    _o, n, root34 = core.verify_checkpoint(proof["checkpoint"], VERIFIER_KEY)
    assert core.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]), 33, n, [bytes.fromhex(h) for h in proof["hashes"]], root34
    )
    early = client.get(f"/audit/events/{receipts[3]['event_id']}").json()["proof"]
    assert early["tree_size"] == 34 and early["leaf_index"] == 3
    c = client.get("/audit/consistency", params={"from": 20, "to": 34}).json()
    assert c["root_from"] == cp["root"] and c["root_to"] == root34.hex()
    assert core.verify_consistency(20, 34, root, root34, [bytes.fromhex(h) for h in c["hashes"]])
    assert client.get("/audit/consistency", params={"from": 5, "to": 99}).status_code == 400
    assert client.get("/audit/events/evt_missing").status_code == 404
    v = client.post("/audit/verify").json()
    assert v["ok"] and v["checked"] == 34 and v["checkpoint"] == {"size": 34, "root_matches": True}
    v = client.post("/audit/verify", json={"from": 10, "to": 20}).json()
    assert v["ok"] and v["checked"] == 10
    metrics = client.get("/metrics").text
    for name in ("acgs_audit_events_appended_total 34.0", "acgs_audit_verify_runs_total 2.0", "acgs_audit_checkpoint_size 34.0"):
        assert name in metrics


def test_http_sink_and_local_sink(settings: AuditSettings, tmp_path: Path) -> None:
    app = create_app(settings)
    with ServerThread(app) as server:

        async def go() -> None:
            sink = HttpAuditSink(f"http://127.0.0.1:{server.port}")
            try:
                # The evolution service's event shape, delivered twice (at least once).
                e = event(1, metadata={"idempotency_key": "evolution:1"})
                await sink.record(e)
                await sink.record(e)
                receipts = await sink.record_many([event(2), event(3)])
                assert [r["index"] for r in receipts] == [1, 2]
                with pytest.raises(AuditDeliveryError, match="422"):
                    await sink.record({**event(4), "agent_id": ""})
            finally:
                await sink.aclose()
            down = HttpAuditSink("http://127.0.0.1:9")
            with pytest.raises(AuditDeliveryError, match="unreachable"):
                await down.record(event(5))
            await down.aclose()

        asyncio.run(go())

    async def local() -> None:
        log = make_log(f"sqlite:///{tmp_path / 'local.sqlite3'}")
        await log.open()
        try:
            sink = LocalAuditSink(log)
            await sink.record(event(1))
            assert await log.store.size() == 1
        finally:
            await log.close()

    asyncio.run(local())


def test_command_line_verifies_checkpoints_and_exports(settings: AuditSettings, tmp_path: Path) -> None:
    with TestClient(create_app(settings)) as client:
        client.post("/audit/events", json=[event(i) for i in range(50)])
        client.get("/audit/checkpoint")
    env = service_env(settings.data_dir, settings.resolved_database_url())

    def acgs(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "acgs", "audit", *args], env=env, capture_output=True, text=True, cwd=REPO)

    v = acgs("verify", "--progress")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["ok"] and "verifying: 50/50 events" in v.stderr
    c = acgs("checkpoint", "--json")
    assert json.loads(c.stdout)["size"] == 50
    out = tmp_path / "segment.json"
    e = acgs("export", "--from", "10", "--to", "20", str(out))
    assert e.returncode == 0, e.stderr
    key_file = tmp_path / "verifier.key"
    key_file.write_text(VERIFIER_KEY + "\n")
    # Offline: no database settings at all.
    offline = subprocess.run(
        [sys.executable, "-m", "acgs", "audit", "verify-export", str(out), "--key", f"@{key_file}"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "python")}, capture_output=True, text=True,
    )  # fmt: skip
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads(offline.stdout)["events"] == 10
    doc = json.loads(out.read_text())
    doc["events"][3]["payload"] = doc["events"][3]["payload"].replace("allow", "deny!")
    out.write_text(json.dumps(doc))
    bad = acgs("verify-export", str(out), "--key", VERIFIER_KEY)
    assert bad.returncode == 1 and json.loads(bad.stdout)["first_bad_index"] == 13
    # A tampered store makes `acgs audit verify` fail with the index.
    import sqlite3

    db = sqlite3.connect(settings.data_dir / "audit.sqlite3")
    db.execute("DELETE FROM audit_events WHERE idx = 44")
    db.commit()
    db.close()
    v = acgs("verify")
    assert v.returncode == 1 and "index 44" in v.stderr


def test_serve_command_runs_the_audit_service(tmp_path: Path) -> None:
    from tests.services.audit_helpers import AuditProcess
    from tests.services.conftest import free_port

    proc = AuditProcess(free_port(), service_env(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite3'}"), tmp_path / "log.txt", via_cli=True)
    proc.start()
    try:
        import httpx

        r = httpx.post(f"{proc.url}/audit/event", json=SEED_EVENT)
        assert r.status_code == 200 and r.json()["hash"].startswith("sha256:")
        assert httpx.get(f"{proc.url}/openapi.json").json()["paths"]["/audit/event"]
    finally:
        proc.stop()


def test_evolution_outbox_relays_into_the_audit_service(settings: AuditSettings, tmp_path: Path) -> None:
    """The evolution service's relay, pointed at the audit service over HTTP: its transitions
    land in the chain once each, even when the outbox delivers them again."""
    from acgs.services.evolution.audit import OutboxRelay
    from tests.services.test_evolution_service import MINOR, service

    with ServerThread(create_app(settings)) as audit:
        url = f"http://127.0.0.1:{audit.port}"

        async def scenario() -> None:
            sink = HttpAuditSink(url)
            try:
                async with service(f"sqlite:///{tmp_path / 'evo.sqlite3'}", tmp_path / "evo", audit_sink=sink,
                                   settings={"relay_interval": 0.05}) as svc:  # fmt: skip
                    out = await svc.submit(MINOR)
                    for _ in range(100):
                        if not await svc.store.outbox(pending_only=True, limit=10):
                            break
                        await asyncio.sleep(0.05)
                    # Deliver everything again, as after a crash between delivery and bookkeeping.
                    for entry in await svc.store.outbox(pending_only=False, limit=100):
                        await sink.record(entry.event)
                    await OutboxRelay(svc.store, sink).deliver_once()
            finally:
                await sink.aclose()
            async with httpx.AsyncClient() as client:
                page = (await client.get(f"{url}/audit/events", params={"decision_id": out["decision_id"]})).json()
                actions = [e["event"]["action"] for e in page["events"]]
                assert actions == ["evolution.submit", "evolution.auto_approve"]
                assert (await client.post(f"{url}/audit/verify")).json()["ok"]

        asyncio.run(scenario())
