"""Scale-out on loopback: three policy-engine processes and one audit process sharing a real
PostgreSQL (the audit chain) and a real Redis (the L2 decision cache).

Concurrent load spread over the three engines; a decision computed on one engine is an L2 hit
on another; one engine is killed with SIGKILL mid-load and the client fails over to the other
two; afterwards the audit log is one chain (contiguous indices, every chain hash linking its
predecessor, verified by the service and by ``acgs audit verify``) holding every decision id a
client was answered with HTTP 200. The engines run with ``ACGS_POLICY_DECISION_LOG_MODE=sync``:
that is the mode in which a kill loses nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from acgs import SEED_REQUEST
from acgs import _acgs as core
from tests.services.audit_helpers import REPO, AuditProcess, service_env
from tests.services.conftest import RedisServer
from tests.services.procs import ServiceProcess, free_port

ENGINES = 3
#: Requests of the concurrent phase, and how many are in flight at once.
REQUESTS = 1800
CONCURRENCY = 48
#: Distinct inputs in the load: fewer than requests, so the caches answer part of it.
DISTINCT = 600
#: The engine that is killed, and after how many answered requests.
VICTIM = 2
KILL_AFTER = REQUESTS // 3


def _request(i: int) -> dict[str, Any]:
    """A decision request the engine evaluates in full (no fast path), so it goes through L1
    and L2; ``i`` makes the input distinct."""
    body = copy.deepcopy(SEED_REQUEST)
    body["action"] = f"analysis.run_custom_{i % 17}"
    body["context"]["session_id"] = f"sess_{i}"  # type: ignore[index]
    body["agent_id"] = f"agent-{i % 5}"
    return body


def _policy_process(env: dict[str, str], log_path: Path) -> ServiceProcess:
    return ServiceProcess("acgs.services.policy", "policy engine", free_port(), env, log_path)


@dataclass
class Cluster:
    audit: AuditProcess
    engines: list[ServiceProcess]
    redis: RedisServer
    database_url: str
    data_dir: Path


@pytest.fixture
def cluster(tmp_path: Path, postgres_database: str, redis_server: RedisServer) -> Iterator[Cluster]:
    env = service_env(tmp_path, postgres_database)
    audit = AuditProcess(free_port(), env, tmp_path / "audit.log")
    engine_env = dict(env)
    engine_env.update(
        {
            "ACGS_REDIS_URL": redis_server.url,
            # Loopback Redis on a busy 2-core machine: a generous deadline keeps L2 in use.
            "ACGS_REDIS_TIMEOUT_MS": "1000",
            "ACGS_POLICY_DECISION_LOG": audit.url,
            "ACGS_POLICY_DECISION_LOG_MODE": "sync",
            # The native evaluator decides faster than Redis answers, so with it on the
            # engines skip L2; the Wasm keeps L2 in the path this test is about.
            "ACGS_POLICY_NATIVE": "false",
        }
    )
    engines = [_policy_process(engine_env, tmp_path / f"policy-{i}.log") for i in range(ENGINES)]
    audit.start()
    try:
        for engine in engines:
            engine.spawn()  # all three load their bundle at once
        for engine in engines:
            engine.wait_healthy()
        yield Cluster(audit, engines, redis_server, postgres_database, tmp_path)
    finally:
        for engine in engines:
            engine.stop()
        audit.stop()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def _l2_hits(client: httpx.Client, engine: ServiceProcess) -> float:
    text = client.get(f"{engine.url}/metrics").text
    return _metric(text, 'acgs_cache_requests_total{level="l2",result="hit"}')


def _l2_entries(store: redis.Redis) -> int:
    """Decision-cache entries in Redis (other features may keep keys of their own there)."""
    return sum(1 for _ in store.scan_iter(match="acgs:l2:*", count=1000))


def _cross_node_l2(cluster: Cluster) -> list[str]:
    """Each input is decided on engine i and then asked of engine i+1, whose L1 has never seen
    it: engine i+1 answers from the L2 entry engine i wrote, the same decision. Returns the
    decision ids answered."""
    store = redis.Redis.from_url(cluster.redis.url)
    n = 30
    engines = cluster.engines
    with httpx.Client(timeout=30) as client:
        before = [_l2_hits(client, e) for e in engines]
        first: dict[int, dict[str, Any]] = {}
        answered: list[str] = []
        for i in range(n):
            r = client.post(f"{engines[i % ENGINES].url}/v1/data/acgs/main/decision", json=_request(10_000 + i))
            assert r.status_code == 200, r.text
            assert r.json()["cache_hit"] is False and r.json()["fast_path"] is False
            first[i] = r.json()
            answered.append(first[i]["decision_id"])
        # L2 writes leave the request path; wait until every one landed.
        deadline = time.monotonic() + 10
        while _l2_entries(store) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _l2_entries(store) == n
        for i in range(n):
            r = client.post(f"{engines[(i + 1) % ENGINES].url}/v1/data/acgs/main/decision", json=_request(10_000 + i))
            assert r.status_code == 200, r.text
            second = r.json()
            answered.append(second["decision_id"])
            assert second["cache_hit"] is True
            assert second["decision_id"] != first[i]["decision_id"]
            for key in ("allow", "compliance_score", "reasons", "constitutional_hash", "bundle_digest"):
                assert second[key] == first[i][key]
        after = [_l2_hits(client, e) for e in engines]
    gained = [a - b for a, b in zip(after, before, strict=True)]
    # Every engine answered n / 3 of the second round from the others' L2 entries.
    assert gained == [n / ENGINES] * ENGINES, gained
    return answered


@dataclass
class LoadReport:
    answered: dict[str, int] = field(default_factory=dict)  # decision id -> engine
    served: Counter[int] = field(default_factory=Counter)
    served_after_kill: Counter[int] = field(default_factory=Counter)
    failovers: int = 0
    killed_at: int | None = None
    alive: set[int] = field(default_factory=set)


async def _load(cluster: Cluster) -> LoadReport:
    """REQUESTS decisions, CONCURRENCY at a time, round-robin over the live engines. A broken
    connection sends the request to the next engine; a refused one also takes the engine out
    of the rotation."""
    report = LoadReport()
    engines = cluster.engines
    alive = report.alive = set(range(ENGINES))
    turn = 0
    done = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)

    def pick() -> int:
        nonlocal turn
        while True:
            turn += 1
            if turn % ENGINES in alive:
                return turn % ENGINES

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while not queue.empty():
            i = queue.get_nowait()
            body = _request(i % DISTINCT)
            while True:
                node = pick()
                try:
                    r = await client.post(f"{engines[node].url}/v1/data/acgs/main/decision", json=body)
                except httpx.ConnectError:
                    # Nothing listens there any more: stop sending to it, ask another.
                    alive.discard(node)
                    report.failovers += 1
                    assert alive, "every engine is down"
                    continue
                except httpx.TransportError:
                    # The connection broke mid-request (the engine died with it in flight):
                    # unanswered, so ask the next engine.
                    report.failovers += 1
                    continue
                assert r.status_code == 200, r.text
                break
            decision_id = r.json()["decision_id"]
            assert decision_id not in report.answered
            report.answered[decision_id] = node
            report.served[node] += 1
            if report.killed_at is not None:
                report.served_after_kill[node] += 1
            done += 1
            if done == KILL_AFTER:
                # Mid-load, with requests in flight on every engine.
                report.killed_at = done
                engines[VICTIM].kill9()

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return report


def _all_events(client: httpx.Client, base: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = -1
    while True:
        page = client.get(f"{base}/audit/events", params={"after": after, "limit": 1000}).json()
        out.extend(page["events"])
        if page["next_after"] is None:
            return out
        after = page["next_after"]


def _check_one_chain(events: list[dict[str, Any]]) -> None:
    """Contiguous indices from 0, each content hash the SHA-256 of the event's canonical JSON,
    each chain hash SHA-256(previous chain hash || content hash) from the genesis: one chain,
    no fork, recomputed here rather than trusted."""
    prev = bytes(32)
    for position, row in enumerate(events):
        assert row["index"] == position
        content = hashlib.sha256(core.canonical_json(row["event"])).digest()
        assert row["hash"] == f"sha256:{content.hex()}"
        chain = hashlib.sha256(prev + content).digest()
        assert row["chain_hash"] == f"sha256:{chain.hex()}"
        prev = chain


def test_three_engines_one_audit_chain_survive_a_kill(cluster: Cluster) -> None:
    answered = _cross_node_l2(cluster)

    report = asyncio.run(_load(cluster))
    assert report.killed_at == KILL_AFTER
    assert len(report.answered) == REQUESTS, "every request was answered (after failover)"
    # Load spread over all three before the kill; the other two carried on after it.
    assert all(report.served[node] >= REQUESTS // (ENGINES * 6) for node in range(ENGINES)), report.served
    assert report.failovers >= 1 and VICTIM not in report.alive, "the kill was noticed by the client"
    survivors = [node for node in range(ENGINES) if node != VICTIM]
    assert all(report.served_after_kill[node] >= (REQUESTS - KILL_AFTER) // 4 for node in survivors), report.served_after_kill
    victim = cluster.engines[VICTIM].proc
    assert victim is not None and victim.returncode == -signal.SIGKILL

    with httpx.Client(timeout=60) as client:
        # The survivors kept using the shared L2 for inputs the others had decided.
        assert sum(_l2_hits(client, cluster.engines[node]) for node in survivors) > 0
        verify = client.post(f"{cluster.audit.url}/audit/verify").json()
        assert verify["ok"] is True, verify
        events = _all_events(client, cluster.audit.url)
    assert verify["checked"] == len(events)
    _check_one_chain(events)
    logged = Counter(e["event"]["decision_id"] for e in events)
    # Nothing acknowledged is lost: every decision id answered with 200 is in the chain.
    answered.extend(report.answered)
    missing = [d for d in answered if d not in logged]
    assert not missing, f"{len(missing)} acknowledged decisions are not in the audit log, e.g. {missing[:3]}"
    assert all(n == 1 for n in logged.values()), "a decision was logged twice"
    # Only decisions in flight on the killed engine can be logged without having been answered.
    assert len(logged) - len(answered) <= CONCURRENCY

    # The offline verifier, from the stored rows with the service's settings, agrees.
    env = service_env(cluster.data_dir, cluster.database_url)
    offline = subprocess.run(
        [sys.executable, "-m", "acgs", "audit", "verify", "--database-url", cluster.database_url],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert '"ok": true' in offline.stdout
