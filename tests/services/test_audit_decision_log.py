"""Decision logs from the policy service into the audit log: 5,000 decisions over real HTTP
(single requests and batches, queue of 256 so it fills) all arrive (0 dropped), each tied to its decision id, bundle digest and constitutional hash,
with the SHA-256 of its canonical input (or the input itself); a full queue makes handlers wait
instead of dropping; a failing audit store is retried until it takes the events."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from acgs import SEED_REQUEST
from acgs import _acgs as core
from acgs.audit import EventFilter
from acgs.audit.decision_log import DecisionLog
from acgs.audit.sink import LocalAuditSink
from acgs.services.policy import PolicySettings, create_app
from tests.services.audit_helpers import make_log
from tests.services.conftest import ServerThread

DECISIONS = 5000


def _request(i: int) -> dict[str, Any]:
    body = copy.deepcopy(SEED_REQUEST)
    body["context"]["session_id"] = f"sess_{i}"  # type: ignore[index]
    body["agent_id"] = f"agent-{i % 5}"
    return body


async def _all_events(url: str) -> list[dict[str, Any]]:
    log = make_log(url)
    await log.open()
    try:
        out: list[dict[str, Any]] = []
        after = -1
        while True:
            rows = await log.store.find(EventFilter(event_type="policy_decision"), after=after, limit=1000)
            if not rows:
                break
            out.extend(r.event() for r in rows)
            after = rows[-1].index
        assert (await log.verify()).ok
        return out
    finally:
        await log.close()


@pytest.mark.parametrize("mode", ["digest", "full"])
def test_every_decision_is_logged_under_load(tmp_path: Path, mode: str) -> None:
    n = DECISIONS if mode == "digest" else 200
    settings = PolicySettings(
        data_dir=tmp_path, decision_log="local", decision_log_input=mode, decision_log_queue=256, cache_size=0
    )
    app = create_app(settings)
    answers: dict[str, dict[str, Any]] = {}
    with ServerThread(app) as server:
        base = f"http://127.0.0.1:{server.port}"

        async def load() -> str:
            async with httpx.AsyncClient(timeout=60) as client:
                sem = asyncio.Semaphore(16)

                async def one(i: int) -> None:
                    async with sem:
                        r = await client.post(f"{base}/v1/data/acgs/main/decision", json=_request(i))
                        assert r.status_code == 200, r.text
                        answers[r.json()["decision_id"]] = _request(i)

                async def batch(first: int) -> None:
                    # Each input of a batch is a decision of its own, logged as one.
                    inputs = [_request(i) for i in range(first, first + 100)]
                    async with sem:
                        r = await client.post(f"{base}/v1/batch/data/acgs/main/decision", json={"inputs": inputs})
                        assert r.status_code == 200, r.text
                    for request, entry in zip(inputs, r.json()["results"], strict=True):
                        answers[entry["decision_id"]] = request

                singles = 200 if n > 1000 else n
                await asyncio.gather(
                    *(one(i) for i in range(singles)), *(batch(first) for first in range(singles, n, 100))
                )
                # OPA's shape ({"input": ...}) is a decision too.
                r = await client.post(f"{base}/v1/data/acgs/main/decision", json={"input": _request(n)})
                answers[r.json()["decision_id"]] = _request(n)
                return (await client.get(f"{base}/metrics")).text

        metrics = asyncio.run(load())
    assert "acgs_decision_logs_dropped_total 0.0" in metrics
    assert app.policy.decision_log is not None and app.policy.decision_log.dropped == 0
    events = asyncio.run(_all_events(f"sqlite:///{tmp_path / 'audit.sqlite3'}"))
    assert len(events) == n + 1
    by_id = {e["decision_id"]: e for e in events}
    assert set(by_id) == set(answers)
    digest = app.policy.pipeline.bundle_digest
    for decision_id, request in list(answers.items())[:50]:
        e = by_id[decision_id]
        meta = e["metadata"]
        assert meta["bundle_digest"] == digest
        assert e["constitutional_hash"] == "cdd01ef066bc6cf2"
        assert meta["input_sha256"] == hashlib.sha256(core.canonical_json(request)).hexdigest()
        assert e["result"] == ("allow" if meta["result"]["allow"] else "deny")
        assert e["agent_id"] == request["agent_id"] and e["action"] == "data.read_public"
        assert ("input" in meta) == (mode == "full")
        if mode == "full":
            assert meta["input"] == request


def test_decision_logs_are_off_by_default(tmp_path: Path) -> None:
    app = create_app(PolicySettings(data_dir=tmp_path))
    assert app.policy.decision_log is None
    assert not (tmp_path / "audit.sqlite3").exists()


class _Slow:
    """The real local sink, slowed down so the queue fills."""

    def __init__(self, inner: LocalAuditSink, delay: float, failures: int = 0) -> None:
        self.inner = inner
        self.delay = delay
        self.failures = failures

    async def record_many(self, events: list[Any]) -> Any:
        await asyncio.sleep(self.delay)
        if self.failures > 0:
            self.failures -= 1
            raise OSError("audit store unavailable")
        return await self.inner.record_many(events)


def test_full_queue_applies_backpressure_and_failures_are_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"

    async def go() -> DecisionLog:
        log = make_log(url)
        await log.open()
        dlog = DecisionLog(_Slow(LocalAuditSink(log), 0.01, failures=3), capacity=4, batch=8, bundle_digest="b")
        try:
            await asyncio.gather(
                *(dlog.offer(f"d-{i}", "acgs/main/decision", b'{"action":"x"}', {"allow": True}, "allow") for i in range(200))
            )
            await dlog.close(timeout=60)
        finally:
            await log.close()
        return dlog

    dlog = asyncio.run(go())
    assert dlog.waits > 0, "a full queue must make callers wait"
    assert dlog.failures == 3
    assert dlog.written == 200 and dlog.dropped == 0
    events = asyncio.run(_all_events(url))
    assert sorted(e["decision_id"] for e in events) == sorted(f"d-{i}" for i in range(200))


def test_sync_mode_answers_only_decisions_already_in_the_log(tmp_path: Path) -> None:
    """``decision_log_mode = sync``: when a client holds a 200, its decision's event is already
    committed, while the service is still running (nothing is left to drain)."""
    settings = PolicySettings(data_dir=tmp_path, decision_log="local", decision_log_mode="sync", cache_size=0)
    app = create_app(settings)
    answered: list[str] = []
    with ServerThread(app) as server:
        base = f"http://127.0.0.1:{server.port}"

        async def load() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(timeout=60) as client:

                async def one(i: int) -> None:
                    r = await client.post(f"{base}/v1/data/acgs/main/decision", json=_request(i))
                    assert r.status_code == 200, r.text
                    answered.append(r.json()["decision_id"])

                await asyncio.gather(*(one(i) for i in range(300)))
                inputs = [_request(i) for i in range(300, 400)]
                r = await client.post(f"{base}/v1/batch/data/acgs/main/decision", json={"inputs": inputs})
                assert r.status_code == 200, r.text
                answered.extend(entry["decision_id"] for entry in r.json()["results"])
                r = await client.post(f"{base}/v1/data/acgs/main/decision", json={"input": _request(400)})
                assert r.status_code == 200, r.text
                answered.append(r.json()["decision_id"])
            # Read while the service still runs: acknowledged means already stored.
            return await _all_events(f"sqlite:///{tmp_path / 'audit.sqlite3'}")

        events = asyncio.run(load())
    logged = {e["decision_id"] for e in events}
    assert len(answered) == 401
    assert set(answered) <= logged
    dlog = app.policy.decision_log
    assert dlog is not None and dlog.durable and dlog.unacknowledged == 0
    assert dlog.written == len(events) == 401


def test_sync_mode_refuses_a_decision_the_audit_log_did_not_take(tmp_path: Path) -> None:
    """With the audit service unreachable, a sync-mode decision is a 503, never an answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    app = create_app(PolicySettings(data_dir=tmp_path, decision_log=dead, decision_log_mode="sync"))
    with ServerThread(app) as server:
        base = f"http://127.0.0.1:{server.port}"
        flat = httpx.post(f"{base}/v1/data/acgs/main/decision", json=_request(1), timeout=30)
        opa = httpx.post(f"{base}/v1/data/acgs/main/decision", json={"input": _request(2)}, timeout=30)
        batch = httpx.post(
            f"{base}/v1/batch/data/acgs/main/decision", json={"inputs": [_request(3), _request(4)]}, timeout=30
        )
        metrics = httpx.get(f"{base}/metrics").text
    for r in (flat, opa, batch):
        assert r.status_code == 503, r.text
        body = r.json()
        assert "result" not in body and "allow" not in body and "results" not in body
        assert body["errors"][0]["code"] == "decision_log_unavailable"
    assert "acgs_decision_logs_unacknowledged_total 4.0" in metrics


def test_decision_log_mode_setting() -> None:
    assert PolicySettings().decision_log_mode == "async"
    assert PolicySettings.from_env({"ACGS_POLICY_DECISION_LOG_MODE": "SYNC"}).decision_log_mode == "sync"
    with pytest.raises(ValueError, match="ACGS_POLICY_DECISION_LOG_MODE"):
        PolicySettings.from_env({"ACGS_POLICY_DECISION_LOG_MODE": "later"})
