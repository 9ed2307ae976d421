"""The evolution service (port 8002) end to end: the real constitution bundle assessing through
the Wasm engine, the real app over ASGI, and real SQLite files and a real PostgreSQL server
(tests/services/pg.py) underneath."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs.services.evolution import EvolutionSettings, create_app
from acgs.services.evolution.assessment import Assessor
from acgs.services.evolution.audit import OutboxRelay
from acgs.services.evolution.client import DecisionTimeout, EvolutionClient, EvolutionRequestError
from acgs.services.evolution.records import AuditEvent, EvolutionRecord, Status
from acgs.services.evolution.rollback import CommandExecutor, NamedActionExecutor, RollbackStep, StepFailed
from acgs.services.evolution.store import EvolutionStore, open_store
from acgs.services.evolution.workflow import TRANSITIONS, InvalidTransition, moved

ROOT = Path(__file__).resolve().parents[2]
STRESS = ROOT / "tests" / "fixtures" / "stress.tar.gz"
HASH = "cdd01ef066bc6cf2"

#: The original API's evolution request (its field names: evolution_type, submitter).
SEED: dict[str, Any] = {
    "agent_id": "agent-research-7",
    "constitutional_hash": HASH,
    "evolution_type": "feature_addition",
    "version": "1.4.0",
    "changes": {
        "code_changes": ["tools/web_search.py", "prompts/research.txt"],
        "external_dependencies": ["httpx==0.28.1"],
        "privilege_escalation": False,
        "experimental_features": False,
    },
    "performance_analysis": {"complexity_delta": 0.05, "memory_delta": 0.02, "latency_delta": 0.01, "resource_delta": 0.03},
    "rollback_plan": {"procedure": "redeploy the 1.3.2 image and restore the tool list", "tested": True, "automated": False},
    "submitter": "dev@example.com",
    "justification": "agents need web search for literature reviews",
}

#: A plain, well-prepared minor update with a tested, automated rollback plan.
MINOR: dict[str, Any] = {
    "agent_id": "agent-7",
    "type": "minor_update",
    "requested_by": "alice@example.com",
    "changes": {"code_changes": ["prompts/system.txt"], "lines_changed": 40},
    "rollback_plan": {
        "procedure": "redeploy the previous prompt",
        "steps": [{"action": "notify", "params": {"message": "restoring prompts/system.txt"}}],
        "tested": True,
        "automated": True,
    },
    "performance_analysis": {"complexity_delta": 0, "memory_delta": 0, "latency_delta": -0.05, "resource_delta": 0},
}

AUDIT_KEYS = {"event_type", "agent_id", "action", "result", "metadata", "decision_id", "constitutional_hash"}


def body(base: Mapping[str, Any] = MINOR, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def reviewer(name: str) -> dict[str, str]:
    return {"X-ACGS-Identity": name, "X-ACGS-Role": "reviewer"}


def who(name: str, roles: str = "agent") -> dict[str, str]:
    return {"X-ACGS-Identity": name, "X-ACGS-Role": roles}


class Clock:
    """A clock the tests move by hand, for deadlines measured in days."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Service:
    """One running app (lifespan entered) and a client for it."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def store(self) -> EvolutionStore:
        store: EvolutionStore = self.app.state.workflow.store
        return store

    async def submit(self, payload: Mapping[str, Any], expect: int = 201) -> dict[str, Any]:
        r = await self.client.post("/evolution/request", json=payload)
        assert r.status_code == expect, r.text
        out: dict[str, Any] = r.json()
        return out

    async def act(
        self, request_id: str, verb: str, headers: Mapping[str, str], payload: Any = None, expect: int = 200
    ) -> dict[str, Any]:
        r = await self.client.post(f"/evolution/requests/{request_id}/{verb}", json=payload, headers=dict(headers))
        assert r.status_code == expect, r.text
        out: dict[str, Any] = r.json()
        return out

    async def get(self, request_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/evolution/requests/{request_id}")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def events(self, request_id: str | None = None) -> list[AuditEvent]:
        entries = await self.store.outbox(pending_only=False, limit=10_000)
        return [e.event for e in entries if request_id is None or e.event["metadata"]["request_id"] == request_id]


@asynccontextmanager
async def service(database_url: str, tmp_path: Path, **kwargs: Any) -> AsyncIterator[Service]:
    settings_overrides = kwargs.pop("settings", {})
    settings = EvolutionSettings(data_dir=tmp_path, database_url=database_url, sweep_interval=3600.0).replace(
        **settings_overrides
    )
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evolution.test") as client:
            yield Service(app, client)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'evolution.sqlite3'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'evolution.sqlite3'}"


# -- the seed flow ---------------------------------------------------------------------------


def test_seed_request_flows_end_to_end(database_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(database_url, tmp_path) as svc:
            created = await svc.submit(SEED)
            rid = created["request_id"]
            for key in ("request_id", "status", "approval_type", "risk_score", "evolution_score", "reasons",
                        "conditions", "valid_until", "decision_id", "factors"):
                assert key in created
            assert created["status"] == "pending"
            assert created["approval_type"] == "human_review"
            assert created["reviewers_required"] == 2
            assert created["requested_by"] == "dev@example.com"  # the seed's submitter
            assert created["type"] == "feature_addition"  # the seed's evolution_type
            # feature_addition 0.4 + external dependencies 0.4; the factors add up to the risk.
            assert [(f["name"], f["contribution"]) for f in created["factors"]] == [
                ("base_risk", 0.4), ("external_dependencies", 0.4)
            ]
            assert created["risk_score"] == 0.8
            assert created["evolution_score"] < 0.90
            assert created["constitutional_hash"] == HASH
            assert created["valid_until"].endswith("Z")

            first = await svc.act(rid, "approve", reviewer("rita@example.com"), {"reason": "dependency pinned"})
            assert first["status"] == "pending" and [a["reviewer"] for a in first["approvals"]] == ["rita@example.com"]
            again = await svc.act(rid, "approve", reviewer("rita@example.com"), {"reason": "twice"}, expect=409)
            assert again["code"] == "already_approved"
            second = await svc.act(rid, "approve", reviewer("sam@example.com"), {"reason": "reviewed the tool"})
            assert second["status"] == "approved"

            deployed = await svc.act(rid, "deploy", who("dev@example.com"), {"note": "rolled out to 10%"})
            assert deployed["status"] == "deployed" and deployed["deployment"]["by"] == "dev@example.com"

            # The seed's plan is a procedure for people: the service cannot run it, only record
            # that it was carried out.
            refused = await svc.act(rid, "rollback", who("dev@example.com"), {"reason": "error rate up"}, expect=409)
            assert refused["code"] == "no_rollback_steps"
            rolled = await svc.act(
                rid, "rollback", who("dev@example.com"), {"reason": "error rate up", "attest_manual": True}
            )
            assert rolled["status"] == "rolled_back"
            assert rolled["rollbacks"][-1]["steps"][0]["status"] == "attested"

            events = await svc.events(rid)
            assert [e["action"] for e in events] == [
                "evolution.submit",
                "evolution.approval_recorded",
                "evolution.approve",
                "evolution.deploy",
                "evolution.rollback",
            ]
            assert [e["result"] for e in events] == ["pending", "pending", "approved", "deployed", "rolled_back"]
            for e in events:
                assert set(e) == AUDIT_KEYS
                assert e["decision_id"] == created["decision_id"]
                assert e["agent_id"] == SEED["agent_id"]
                assert e["constitutional_hash"] == HASH
                assert e["event_type"] == "evolution_transition"
            assert events[2]["metadata"]["actor"] == "sam@example.com"
            assert events[2]["metadata"]["reviewers"] == ["rita@example.com", "sam@example.com"]

    run(scenario())


# -- routing by the constitution ---------------------------------------------------------------


def test_routing_thresholds_with_a_request_in_each_route(sqlite_url: str, tmp_path: Path) -> None:
    """>= 0.95 auto-approve; 0.90 to 0.95 fast track (one reviewer); < 0.90 human review (two);
    a violation rejects outright. The scores come from the constitution, through the engine."""

    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            auto = await svc.submit(MINOR)
            assert (auto["approval_type"], auto["status"], auto["reviewers_required"]) == ("auto_approve", "approved", 0)
            assert auto["evolution_score"] == 0.97 >= 0.95
            assert auto["history"][0]["actor"] == "constitution"

            fast = await svc.submit(body(type="configuration"))
            assert (fast["approval_type"], fast["status"], fast["reviewers_required"]) == ("fast_track", "pending", 1)
            assert 0.90 <= fast["evolution_score"] < 0.95

            human = await svc.submit(body(type="feature_addition"))
            assert (human["approval_type"], human["status"], human["reviewers_required"]) == ("human_review", "pending", 2)
            assert human["evolution_score"] < 0.90

            # Risk factors rule out auto-approval whatever the score: mitigated network change.
            mitigated = await svc.submit(
                body(
                    changes={"code_changes": ["net.py"], "network_changes": True},
                    mitigations={"sandbox_deployment": True, "canary": True, "tests": True},
                )
            )
            assert mitigated["evolution_score"] >= 0.95 and mitigated["approval_type"] == "fast_track"

            major = await svc.submit(body(type="major_update"))
            assert major["approval_type"] == "human_review" and major["reviewers_required"] == 2

            escalation = await svc.submit(body(changes={"code_changes": ["auth.py"], "privilege_escalation": True}))
            assert (escalation["approval_type"], escalation["status"]) == ("rejected", "rejected")
            assert "privilege escalation requires a justification" in escalation["reasons"]
            assert escalation["rejection"]["by"] == "constitution"
            assert escalation["conditions"] == []

            justified = await svc.submit(
                body(changes={"code_changes": ["auth.py"], "privilege_escalation": True}, justification="needs a scoped token")
            )
            assert justified["status"] == "pending" and justified["approval_type"] == "human_review"

            prohibited = await svc.submit(body(changes={"audit_disabled": True}))
            assert prohibited["status"] == "rejected"
            assert any("audit trail" in r for r in prohibited["violations"])

    run(scenario())


def test_fast_track_needs_one_reviewer(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            rid = (await svc.submit(body(type="configuration")))["request_id"]
            out = await svc.act(rid, "approve", reviewer("rita"), {"reason": "config only"})
            assert out["status"] == "approved" and len(out["approvals"]) == 1

    run(scenario())


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (body(type="prompt_tuning"), "body", "unknown change type 'prompt_tuning'"),
        (body(rollback_plan=None), "rollback_plan", "Field required"),
        (body(rollback_plan={"tested": True}), "rollback_plan", "needs a procedure or at least one step"),
        (body(rollback_plan={"steps": [], "procedure": "  "}), "rollback_plan", "needs a procedure"),
        (body(changes={"privilege_escalation": "yes"}), "changes.privilege_escalation", "boolean"),
        (body(changes={"lines_changed": -3}), "changes.lines_changed", "greater than or equal to 0"),
        (body(agent_id=None), "agent_id", "Field required"),
        (body(agent_id=""), "agent_id", "at least 1 character"),
        (body(type=None), "body", "type (or evolution_type) is required"),
        (body(type="patch", evolution_type="minor_update"), "body", "type and evolution_type disagree"),
        (body(surprise=1), "surprise", "Extra inputs are not permitted"),
        (body(requested_by=None), "body", "requested_by (or submitter) is required"),
        (body(mitigations={"canary": "on"}), "mitigations.canary", "boolean"),
        (body(performance_analysis={"latency_delta": "fast"}), "performance_analysis.latency_delta", "number"),
        (body(rollback_plan={"steps": [{"params": {}}]}), "rollback_plan.steps", "Field required"),
    ],
)
def test_bad_bodies_get_422_with_a_clear_message(
    sqlite_url: str, tmp_path: Path, payload: dict[str, Any], field: str, words: str
) -> None:
    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            out = await svc.submit(payload, expect=422)
            assert out["code"] == "invalid_request"
            assert words in out["message"], out
            if out["errors"]:
                assert any(e["field"].startswith(field) for e in out["errors"]), out
            assert await svc.events() == []

    run(scenario())


def test_non_json_body_and_wrong_hash(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            r = await svc.client.post(
                "/evolution/request", content=b"{not json", headers={"content-type": "application/json"}
            )
            assert r.status_code == 422 and r.json()["code"] == "invalid_request"
            out = await svc.submit(body(constitutional_hash="0000000000000000"), expect=400)
            assert out["code"] == "constitutional_hash_mismatch"
            assert await svc.events() == []

    run(scenario())


# -- state machine ------------------------------------------------------------------------------


def test_transition_table() -> None:
    record = EvolutionRecord(
        request_id="evo_x", decision_id="d", agent_id="a", requested_by="r", status=Status.PENDING,
        created_at=0.0, updated_at=0.0, review_deadline=1.0, valid_until=2.0,
        submission={"type": "patch"}, assessment={},
    )
    for start in Status:
        for end in Status:
            record.status = start
            if end in TRANSITIONS[start]:
                assert moved(record, end, actor="x", reason=None, now=1.0).status is end
            else:
                with pytest.raises(InvalidTransition):
                    moved(record, end, actor="x", reason=None, now=1.0)
    terminal = {s for s, ends in TRANSITIONS.items() if not ends}
    assert terminal == {Status.REJECTED, Status.EXPIRED, Status.CANCELLED, Status.ROLLED_BACK}


def test_invalid_transitions_get_409(database_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(database_url, tmp_path) as svc:
            approved = (await svc.submit(MINOR))["request_id"]
            pending = (await svc.submit(body(type="configuration")))["request_id"]
            requester = who(MINOR["requested_by"])

            for rid, verb, headers, payload in [
                (approved, "approve", reviewer("rita"), {"reason": "late"}),
                (approved, "reject", reviewer("rita"), {"reason": "late"}),
                (approved, "rollback", requester, {"reason": "not deployed yet"}),
                (pending, "deploy", requester, None),
                (pending, "rollback", requester, {"reason": "x"}),
            ]:
                out = await svc.act(rid, verb, headers, payload, expect=409)
                assert out["code"] == "invalid_transition", (verb, out)

            await svc.act(approved, "deploy", requester)
            assert (await svc.act(approved, "deploy", requester, expect=409))["code"] == "invalid_transition"
            assert (await svc.act(approved, "cancel", requester, expect=409))["code"] == "invalid_transition"

            await svc.act(pending, "cancel", requester, {"reason": "superseded"})
            for verb, headers, payload in [
                ("approve", reviewer("rita"), {"reason": "x"}),
                ("reject", reviewer("rita"), {"reason": "x"}),
                ("cancel", requester, None),
                ("deploy", requester, None),
            ]:
                assert (await svc.act(pending, verb, headers, payload, expect=409))["code"] == "invalid_transition"

            missing = await svc.act("evo_missing", "approve", reviewer("rita"), {"reason": "x"}, expect=404)
            assert missing["code"] == "request_not_found"
            r = await svc.client.get("/evolution/requests/evo_missing")
            assert r.status_code == 404 and r.json()["code"] == "request_not_found"

            # Refusals write nothing: events only for the transitions that happened.
            actions = [e["action"] for e in await svc.events(approved)]
            assert actions == ["evolution.submit", "evolution.auto_approve", "evolution.deploy"]
            actions = [e["action"] for e in await svc.events(pending)]
            assert actions == ["evolution.submit", "evolution.cancel"]

    run(scenario())


def test_cancel_is_for_the_requester(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            rid = (await svc.submit(body(type="configuration")))["request_id"]
            out = await svc.act(rid, "cancel", who("mallory"), None, expect=403)
            assert out["code"] == "forbidden"
            r = await svc.client.post(f"/evolution/requests/{rid}/cancel")
            assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
            out = await svc.act(rid, "cancel", who(MINOR["requested_by"]), {"reason": "not needed"})
            assert out["status"] == "cancelled" and out["history"][-1]["actor"] == MINOR["requested_by"]

    run(scenario())


# -- who may review ---------------------------------------------------------------------------


def test_self_approval_and_missing_roles_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            rid = (await svc.submit(body(type="feature_addition")))["request_id"]
            own = await svc.act(rid, "approve", reviewer(MINOR["requested_by"]), {"reason": "looks fine to me"}, expect=403)
            assert own["code"] == "self_review"
            agent = await svc.act(rid, "approve", reviewer(MINOR["agent_id"]), {"reason": "trust me"}, expect=403)
            assert agent["code"] == "self_review"
            own_reject = await svc.act(rid, "reject", reviewer(MINOR["requested_by"]), {"reason": "x"}, expect=403)
            assert own_reject["code"] == "self_review"
            no_role = await svc.act(rid, "approve", who("rita", "agent"), {"reason": "x"}, expect=403)
            assert no_role["code"] == "forbidden" and "reviewer role" in no_role["message"]
            r = await svc.client.post(f"/evolution/requests/{rid}/approve", json={"reason": "x"})
            assert r.status_code == 401
            no_reason = await svc.act(rid, "approve", reviewer("rita"), {"reason": ""}, expect=422)
            assert no_reason["errors"][0]["field"] == "reason"
            await svc.act(rid, "approve", reviewer("rita"), {}, expect=422)
            # X-ACGS-Reviewer is the same identity header; admins hold every role.
            out = await svc.act(rid, "approve", {"X-ACGS-Reviewer": "sam", "X-ACGS-Role": "admin"}, {"reason": "ok"})
            assert out["approvals"][0]["reviewer"] == "sam"
            record = await svc.get(rid)
            assert record["status"] == "pending" and len(record["approvals"]) == 1

    run(scenario())


# -- concurrency ------------------------------------------------------------------------------


def test_ten_concurrent_approvals_count_once(database_url: str, tmp_path: Path) -> None:
    """Two service instances on one database (so no in-process lock can help) race ten
    approvals of each request; the database's own locking decides."""

    async def scenario() -> None:
        async with service(database_url, tmp_path) as one, service(database_url, tmp_path) as two:
            nodes = [one, two]

            async def approve(rid: str, name: str, i: int) -> httpx.Response:
                node = nodes[i % 2]
                return await node.client.post(
                    f"/evolution/requests/{rid}/approve", json={"reason": f"ok {i}"}, headers=reviewer(name)
                )

            # One reviewer needed, ten different reviewers at once: exactly one approval counts.
            fast = (await one.submit(body(type="configuration")))["request_id"]
            replies = await asyncio.gather(*(approve(fast, f"reviewer-{i}", i) for i in range(10)))
            codes = sorted(r.status_code for r in replies)
            assert codes == [200] + [409] * 9, [r.text for r in replies]
            assert {r.json()["code"] for r in replies if r.status_code == 409} == {"invalid_transition"}
            record = await two.get(fast)
            assert record["status"] == "approved" and len(record["approvals"]) == 1
            winner = next(r for r in replies if r.status_code == 200).json()
            assert record["approvals"][0]["reviewer"] == winner["approvals"][0]["reviewer"]
            actions = [e["action"] for e in await one.events(fast)]
            assert actions == ["evolution.submit", "evolution.approve"]

            # Two reviewers needed. The same reviewer ten times at once counts once ...
            human = (await one.submit(body(type="feature_addition")))["request_id"]
            replies = await asyncio.gather(*(approve(human, "rita", i) for i in range(10)))
            assert sorted(r.status_code for r in replies) == [200] + [409] * 9
            assert {r.json()["code"] for r in replies if r.status_code == 409} == {"already_approved"}
            record = await one.get(human)
            assert record["status"] == "pending" and [a["reviewer"] for a in record["approvals"]] == ["rita"]

            # ... and ten distinct reviewers at once: the first to count approves, the rest 409.
            replies = await asyncio.gather(*(approve(human, f"peer-{i}", i) for i in range(10)))
            assert sorted(r.status_code for r in replies) == [200] + [409] * 9
            record = await two.get(human)
            assert record["status"] == "approved" and len(record["approvals"]) == 2
            assert [e["action"] for e in await two.events(human)] == [
                "evolution.submit", "evolution.approval_recorded", "evolution.approve"
            ]

    run(scenario())


# -- expiry -----------------------------------------------------------------------------------


def test_overdue_requests_expire_in_the_services_name(database_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = Clock()
        settings = {"review_timeout": 3600.0, "validity": 7200.0}
        async with service(database_url, tmp_path, clock=clock, settings=settings) as svc:
            lazy = (await svc.submit(body(type="feature_addition")))["request_id"]
            swept = (await svc.submit(body(type="configuration")))["request_id"]
            approved = (await svc.submit(MINOR))["request_id"]
            await svc.act(lazy, "approve", reviewer("rita"), {"reason": "half"})

            clock.advance(3601)  # past the review deadline, within validity
            # Lazily on read:
            record = await svc.get(lazy)
            assert record["status"] == "expired"
            assert record["history"][-1]["actor"] == "acgs"
            assert "review deadline" in record["history"][-1]["reason"]
            assert record["rejection"] is None
            late = await svc.act(lazy, "approve", reviewer("sam"), {"reason": "too late"}, expect=409)
            assert late["code"] == "invalid_transition"

            # By the sweep (which the periodic task runs), without a read; the approved one
            # is still within its validity:
            assert await svc.app.state.workflow.expire_due() == 1
            raw = await svc.store.get(swept)
            assert raw is not None and raw.status is Status.EXPIRED
            assert (await svc.get(approved))["status"] == "approved"

            clock.advance(3600)  # past validity: an approved change not deployed expires
            out = await svc.act(approved, "deploy", who(MINOR["requested_by"]), expect=409)
            assert out["code"] == "request_expired"
            assert (await svc.get(approved))["status"] == "expired"

            for rid in (lazy, swept, approved):
                events = await svc.events(rid)
                expiry = [e for e in events if e["action"] == "evolution.expire"]
                assert len(expiry) == 1 and expiry[0]["result"] == "expired"
                assert expiry[0]["metadata"]["actor"] == "acgs"
                assert not any(e["action"] == "evolution.reject" for e in events)

    run(scenario())


def test_periodic_sweep_expires_without_reads(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = Clock()
        settings = {"review_timeout": 60.0, "sweep_interval": 0.05}
        async with service(sqlite_url, tmp_path, clock=clock, settings=settings) as svc:
            rid = (await svc.submit(body(type="configuration")))["request_id"]
            clock.advance(61)
            for _ in range(200):
                raw = await svc.store.get(rid)
                assert raw is not None
                if raw.status is Status.EXPIRED:
                    break
                await asyncio.sleep(0.05)
            assert raw.status is Status.EXPIRED

    run(scenario())


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_runs_the_plan_through_the_executor(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    backup = tmp_path / "agent.toml.previous"
    backup.write_text("model = 'v1'\n")
    attempts: list[str] = []

    async def restore_file(request: EvolutionRecord, params: Mapping[str, Any]) -> str:
        attempts.append(request.request_id)
        config.write_text(backup.read_text())
        return f"restored {config.name}"

    async def flaky_health_check(request: EvolutionRecord, params: Mapping[str, Any]) -> str:
        if not params.get("ready"):
            raise StepFailed("agent did not report healthy")
        return "healthy"

    executor = NamedActionExecutor({"restore_file": restore_file, "health_check": flaky_health_check})
    plan_ok = {
        "steps": [
            {"action": "notify", "params": {"message": "rolling back the model"}},
            {"action": "restore_file", "description": "put the previous config back"},
            {"action": "health_check", "params": {"ready": True}},
        ],
        "tested": True,
        "automated": True,
    }
    plan_failing = {
        "steps": ["restore_file", {"action": "health_check", "params": {"ready": False}}, "notify"],
        "tested": True,
        "automated": True,
    }
    plan_unknown = {"steps": ["reboot_cluster"], "tested": True, "automated": True}

    async def scenario() -> None:
        async with service(database_url, tmp_path, executor=executor) as svc:
            requester = who(MINOR["requested_by"])
            ok = (await svc.submit(body(rollback_plan=plan_ok)))["request_id"]
            failing = (await svc.submit(body(rollback_plan=plan_failing)))["request_id"]
            unknown = (await svc.submit(body(rollback_plan=plan_unknown)))["request_id"]
            for rid in (ok, failing, unknown):
                await svc.act(rid, "deploy", requester)
            config.write_text("model = 'v2'\n")

            out = await svc.act(ok, "rollback", requester, {"reason": "quality regression"})
            assert out["status"] == "rolled_back"
            steps = out["rollbacks"][-1]["steps"]
            assert [(s["action"], s["status"]) for s in steps] == [
                ("notify", "succeeded"), ("restore_file", "succeeded"), ("health_check", "succeeded")
            ]
            assert steps[1]["detail"] == "restored agent.toml"
            assert config.read_text() == "model = 'v1'\n"

            config.write_text("model = 'v2'\n")
            out = await svc.act(failing, "rollback", reviewer("rita"), {"reason": "incident 42"})
            assert out["status"] == "deployed"  # not rolled back: a step failed
            last = out["rollbacks"][-1]
            assert last["state"] == "failed"
            assert [(s["action"], s["status"]) for s in last["steps"]] == [
                ("restore_file", "succeeded"), ("health_check", "failed"), ("notify", "skipped")
            ]
            assert "agent did not report healthy" in last["steps"][1]["detail"]

            out = await svc.act(unknown, "rollback", requester, {"reason": "x"})
            assert out["status"] == "deployed"
            assert "no rollback action named 'reboot_cluster'" in out["rollbacks"][-1]["steps"][0]["detail"]

            # Once the action exists, a second attempt completes the rollback.
            executor.register("reboot_cluster", restore_file)
            out = await svc.act(unknown, "rollback", requester, {"reason": "retry"})
            assert out["status"] == "rolled_back"
            assert [a["state"] for a in out["rollbacks"]] == ["failed", "succeeded"]

            # Only the requester, reviewers, deployers and admins may roll back.
            other = (await svc.submit(body(rollback_plan=plan_ok)))["request_id"]
            await svc.act(other, "deploy", requester)
            assert (await svc.act(other, "rollback", who("mallory"), {"reason": "x"}, expect=403))["code"] == "forbidden"

            assert [e["action"] for e in await svc.events(failing)] == [
                "evolution.submit", "evolution.auto_approve", "evolution.deploy",
                "evolution.rollback_started", "evolution.rollback_failed",
            ]
            failed_event = (await svc.events(failing))[-1]
            assert failed_event["result"] == "deployed"
            assert [s["status"] for s in failed_event["metadata"]["steps"]] == ["succeeded", "failed", "skipped"]
            assert [e["action"] for e in await svc.events(ok)][-2:] == ["evolution.rollback_started", "evolution.rollback"]

    run(scenario())


def test_a_running_rollback_keeps_a_second_one_out(sqlite_url: str, tmp_path: Path) -> None:
    started = asyncio.Event
    release: dict[str, asyncio.Event] = {}

    async def slow(request: EvolutionRecord, params: Mapping[str, Any]) -> str:
        release["started"].set()
        await release["go"].wait()
        return "done"

    async def scenario() -> None:
        release["started"] = started()
        release["go"] = asyncio.Event()
        executor = NamedActionExecutor({"slow": slow})
        async with service(sqlite_url, tmp_path, executor=executor) as svc:
            requester = who(MINOR["requested_by"])
            rid = (await svc.submit(body(rollback_plan={"steps": ["slow"], "tested": True, "automated": True})))["request_id"]
            await svc.act(rid, "deploy", requester)
            first = asyncio.create_task(svc.act(rid, "rollback", requester, {"reason": "one"}))
            await release["started"].wait()
            busy = await svc.act(rid, "rollback", requester, {"reason": "two"}, expect=409)
            assert busy["code"] == "rollback_in_progress"
            release["go"].set()
            assert (await first)["status"] == "rolled_back"

    run(scenario())


def test_command_executor_is_opt_in_and_bounded(tmp_path: Path) -> None:
    record = EvolutionRecord(
        request_id="evo_cmd", decision_id="d", agent_id="a", requested_by="r", status=Status.DEPLOYED,
        created_at=0.0, updated_at=0.0, review_deadline=None, valid_until=1.0, submission={}, assessment={},
    )
    true, false = "/bin/true", "/bin/false"

    async def scenario() -> None:
        executor = CommandExecutor([true, false, "/bin/sleep"], cwd=str(tmp_path), timeout=0.5)
        assert await executor.run_step(record, RollbackStep("cmd", {"argv": [true]})) == f"{true} succeeded"
        with pytest.raises(StepFailed, match="exited with status 1"):
            await executor.run_step(record, RollbackStep("cmd", {"argv": [false]}))
        with pytest.raises(StepFailed, match="not allowed"):
            await executor.run_step(record, RollbackStep("cmd", {"argv": ["/bin/rm", "-rf", str(tmp_path)]}))
        with pytest.raises(StepFailed, match="did not finish"):
            await executor.run_step(record, RollbackStep("cmd", {"argv": ["/bin/sleep", "5"]}))
        with pytest.raises(StepFailed, match="argv"):
            await executor.run_step(record, RollbackStep("cmd", {"argv": "rm -rf /"}))
        # The default executor never runs commands: it only knows registered names.
        with pytest.raises(StepFailed, match="no rollback action named 'cmd'"):
            await NamedActionExecutor().run_step(record, RollbackStep("cmd", {"argv": [true]}))

    run(scenario())


# -- audit --------------------------------------------------------------------------------------


def test_every_transition_is_in_the_outbox(database_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(database_url, tmp_path) as svc:
            requester = who(MINOR["requested_by"])
            rejected = (await svc.submit(body(type="feature_addition")))["request_id"]
            await svc.act(rejected, "reject", reviewer("rita"), {"reason": "too broad"})
            refused = (await svc.submit(body(changes={"logging_disabled": True})))["request_id"]
            cancelled = (await svc.submit(body(type="configuration")))["request_id"]
            await svc.act(cancelled, "cancel", requester)
            rolled = (await svc.submit(MINOR))["request_id"]
            await svc.act(rolled, "deploy", requester)
            await svc.act(rolled, "rollback", requester, {"reason": "x"})

            for rid in (rejected, refused, cancelled, rolled):
                record = await svc.get(rid)
                events = await svc.events(rid)
                transitions = [
                    (e["metadata"]["from_status"], e["metadata"]["to_status"])
                    for e in events
                    if e["metadata"]["from_status"] != e["metadata"]["to_status"]
                ]
                # The submission (none -> pending), then one event per state change.
                assert transitions == [(None, "pending")] + [(h["from"], h["to"]) for h in record["history"]]
                assert all(e["decision_id"] == record["decision_id"] for e in events)
            reject_event = (await svc.events(rejected))[-1]
            assert reject_event["metadata"]["actor"] == "rita" and reject_event["metadata"]["reason"] == "too broad"
            constitution_reject = (await svc.events(refused))[-1]
            assert constitution_reject["metadata"]["actor"] == "constitution"
            assert constitution_reject["action"] == "evolution.reject"

    run(scenario())


def test_outbox_relay_delivers_in_order_and_retries(sqlite_url: str, tmp_path: Path) -> None:
    class Sink:
        def __init__(self) -> None:
            self.events: list[AuditEvent] = []
            self.fail = True

        async def record(self, event: AuditEvent) -> None:
            if self.fail and len(self.events) == 1:
                raise ConnectionError("audit engine unavailable")
            self.events.append(event)

    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            await svc.submit(MINOR)
            await svc.submit(body(type="configuration"))
            sink = Sink()
            relay = OutboxRelay(svc.store, sink)
            with pytest.raises(ConnectionError):
                await relay.deliver_once()
            pending = await svc.store.outbox(pending_only=True, limit=100)
            assert len(pending) == 2 and pending[0].attempts == 1 and "unavailable" in (pending[0].last_error or "")
            sink.fail = False
            assert await relay.deliver_once() == 2
            assert [e["action"] for e in sink.events] == ["evolution.submit", "evolution.auto_approve", "evolution.submit"]
            assert await svc.store.outbox(pending_only=True, limit=100) == []
            assert all(e.delivered_at is not None for e in await svc.store.outbox(pending_only=False, limit=100))

        # With a sink attached to the app, the relay runs in the background.
        sink2 = Sink()
        sink2.fail = False
        async with service(
            f"sqlite:///{tmp_path / 'relay.sqlite3'}", tmp_path, audit_sink=sink2, settings={"relay_interval": 0.05}
        ) as svc:
            await svc.submit(MINOR)
            for _ in range(100):
                if len(sink2.events) == 2:
                    break
                await asyncio.sleep(0.05)
            assert [e["action"] for e in sink2.events] == ["evolution.submit", "evolution.auto_approve"]

    run(scenario())


# -- fail closed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bundle", "entrypoint", "words"),
    [
        (STRESS, "acgs/evolution/decision", "unknown_entrypoint"),
        # stress/echo answers with its input: a "decision" that is not one.
        (STRESS, "stress/echo", "malformed decision"),
        (None, "acgs/evolution/decision", "cannot load the policy bundle"),
    ],
    ids=["missing-entrypoint", "malformed-decision", "bundle-does-not-load"],
)
def test_engine_faults_reject_the_request(
    sqlite_url: str, tmp_path: Path, bundle: Path | None, entrypoint: str, words: str
) -> None:
    if bundle is None:
        bundle = tmp_path / "broken.tar.gz"
        bundle.write_bytes(b"\x1f\x8b not really a bundle")

    async def scenario() -> None:
        settings = {"bundle": bundle, "entrypoint": entrypoint}
        async with service(sqlite_url, tmp_path, settings=settings) as svc:
            health = await svc.client.get("/health")
            if entrypoint == "acgs/evolution/decision":
                assert health.status_code == 503 and health.json()["status"] == "degraded"
            for payload in (MINOR, SEED):
                out = await svc.submit(payload)
                assert out["status"] == "rejected" and out["approval_type"] == "rejected"
                assert out["reviewers_required"] == 0
                assert out["engine_fault"] and words in out["engine_fault"]
                assert out["reasons"][0].startswith("policy engine fault:")
                assert out["rejection"]["by"] == "acgs"
                assert (await svc.act(out["request_id"], "approve", reviewer("rita"), {"reason": "x"}, expect=409))
            events = await svc.events()
            assert [e["action"] for e in events] == ["evolution.submit", "evolution.reject"] * 2

    run(scenario())


def test_a_decision_asking_for_too_few_reviewers_is_not_trusted() -> None:
    from acgs.services.evolution.assessment import check_decision

    engine = acgs.Engine.load(acgs.default_bundle_path())
    good = engine.evaluate(
        {"agent_id": "a", "requested_by": "b", "type": "feature_addition", "constitutional_hash": HASH,
         "changes": {}, "rollback_plan": {"procedure": "p"}},
        "acgs/evolution/decision",
    )
    assert check_decision(good, HASH) is None
    assert "at least 2" in (check_decision({**good, "reviewers_required": 1}, HASH) or "")
    assert "reviewers required" in (check_decision({**good, "approval_type": "auto_approve"}, HASH) or "")
    assert "despite violations" in (check_decision({**good, "violations": ["x"]}, HASH) or "")
    assert "constitutional hash" in (check_decision(good, "ffffffffffffffff") or "")
    assert "not an object" in (check_decision([good], HASH) or "")
    assert "risk_score" in (check_decision({**good, "risk_score": 2}, HASH) or "")


# -- listing ----------------------------------------------------------------------------------


def test_list_filters_and_pages(database_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(database_url, tmp_path) as svc:
            ids = []
            for i in range(5):
                ids.append((await svc.submit(body(agent_id=f"agent-{i % 2}", type="configuration")))["request_id"])
            await svc.submit(MINOR)

            r = await svc.client.get("/evolution/requests", params={"status": "pending"})
            page = r.json()
            assert r.status_code == 200 and page["total"] == 5
            assert {x["request_id"] for x in page["items"]} == set(ids)

            r = await svc.client.get("/evolution/requests", params={"status": "pending", "agent_id": "agent-0"})
            assert r.json()["total"] == 3 and all(x["agent_id"] == "agent-0" for x in r.json()["items"])

            seen: list[str] = []
            offset: int | None = 0
            while offset is not None:
                r = await svc.client.get("/evolution/requests", params={"limit": 2, "offset": offset})
                page = r.json()
                assert len(page["items"]) <= 2 and page["total"] == 6
                seen += [x["request_id"] for x in page["items"]]
                offset = page["next_offset"]
            assert len(seen) == len(set(seen)) == 6
            created = [x["created_at"] for x in (await svc.client.get("/evolution/requests")).json()["items"]]
            assert created == sorted(created, reverse=True)

            for params in ({"status": "bogus"}, {"limit": 0}, {"limit": 501}, {"offset": -1}):
                r = await svc.client.get("/evolution/requests", params=params)
                assert r.status_code == 422 and r.json()["code"] == "invalid_request", params
            # The original service's path for one request.
            assert (await svc.client.get(f"/evolution/request/{ids[0]}")).json()["request_id"] == ids[0]

    run(scenario())


# -- the reviewers' page ------------------------------------------------------------------------


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.articles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "fields": [], "buttons": []})
        elif tag in ("input", "textarea") and self.forms:
            self.forms[-1]["fields"].append(a.get("name"))
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(a.get("formaction") or self.forms[-1]["action"])
        elif tag == "article":
            self.articles.append(a.get("id") or "")


def test_review_page_lists_pending_requests_and_its_forms_work(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            seed = await svc.submit(SEED)
            fast = await svc.submit(body(type="configuration", description="<script>alert(1)</script>"))
            await svc.submit(MINOR)  # auto-approved: not in the pending queue

            r = await svc.client.get("/evolution/review")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            html = r.text
            parser = _Forms()
            parser.feed(html)
            assert sorted(parser.articles) == sorted([seed["request_id"], fast["request_id"]])
            assert "external_dependencies" in html and "+0.4" in html  # the risk breakdown
            assert "tools/web_search.py" in html  # the changes
            assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
            assert '<script src="/evolution/static/review.js"' in html
            js = await svc.client.get("/evolution/static/review.js")
            assert js.status_code == 200 and "localStorage" in js.text

            form = next(f for f in parser.forms if seed["request_id"] in f["action"])
            assert form["method"] == "post" and {"reviewer", "reason"} <= set(form["fields"])
            approve_url, reject_url = form["buttons"]
            assert approve_url.endswith("/approve") and reject_url.endswith("/reject")

            r = await svc.client.post(approve_url, data={"reviewer": "rita", "reason": "pinned dependency"})
            assert r.status_code == 303 and r.headers["location"].startswith("/evolution/review?")
            page = await svc.client.get(r.headers["location"])
            assert "approved " + seed["request_id"] in page.text or "now pending" in page.text
            assert (await svc.get(seed["request_id"]))["approvals"][0]["reviewer"] == "rita"

            # Refusals come back as the page with the reason, under the refusal's status.
            r = await svc.client.post(approve_url, data={"reviewer": "dev@example.com", "reason": "mine"})
            assert r.status_code == 403 and "cannot approve" in r.text
            r = await svc.client.post(approve_url, data={"reviewer": "sam", "reason": ""})
            assert r.status_code == 422 and "reason is required" in r.text
            r = await svc.client.post(approve_url, data={"reviewer": "", "reason": "x"})
            assert r.status_code == 401

            # A form another site makes the reviewer's browser post is refused, whatever it says.
            for headers in (
                {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
                {"Origin": "https://evil.example"},
                {"Origin": "null"},
                {"Sec-Fetch-Site": "same-site"},
            ):
                r = await svc.client.post(approve_url, data={"reviewer": "sam", "reason": "fine"}, headers=headers)
                assert r.status_code == 403 and "refused" in r.text, headers
            assert (await svc.get(seed["request_id"]))["status"] == "pending"
            # The page's own post, as a browser sends it.
            same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://evolution.test"}
            r = await svc.client.post(approve_url, data={"reviewer": "sam", "reason": "fine"}, headers=same)
            assert r.status_code == 303
            assert (await svc.get(seed["request_id"]))["status"] == "approved"

            fast_form = next(f for f in parser.forms if fast["request_id"] in f["action"])
            r = await svc.client.post(fast_form["buttons"][1], data={"reviewer": "sam", "reason": "unclear config"})
            assert r.status_code == 303
            rejected = await svc.get(fast["request_id"])
            assert rejected["status"] == "rejected" and rejected["rejection"]["by"] == "sam"

            r = await svc.client.get("/evolution/review")
            assert "No pending requests" in r.text
            r = await svc.client.get("/evolution/review", params={"status": "rejected"})
            assert fast["request_id"] in r.text

    run(scenario())


# -- the agents' client ------------------------------------------------------------------------


def test_client_submits_waits_for_the_decision_and_maps_errors(sqlite_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = EvolutionSettings(data_dir=tmp_path, database_url=sqlite_url, sweep_interval=3600.0)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            agent = EvolutionClient("http://e.test", identity="alice@example.com", transport=transport)
            rita = EvolutionClient("http://e.test", identity="rita", roles="reviewer", transport=transport)
            async with agent, rita:
                request = await agent.submit(body(type="configuration", requested_by=None))
                assert request["requested_by"] == "alice@example.com"  # from the identity header
                rid = request["request_id"]

                with pytest.raises(DecisionTimeout) as waited:
                    await agent.wait_for_decision(rid, timeout=0.2, poll_interval=0.05)
                assert waited.value.request["status"] == "pending"

                async def review_later() -> None:
                    await asyncio.sleep(0.2)
                    await rita.approve(rid, "config only")

                reviewing = asyncio.create_task(review_later())
                decided = await agent.wait_for_decision(rid, timeout=10, poll_interval=0.05)
                await reviewing
                assert decided["status"] == "approved"
                assert decided["conditions"] == ["post_deployment_monitoring", "rollback_ready"]
                assert (await agent.deploy(rid, "go"))["status"] == "deployed"

                with pytest.raises(EvolutionRequestError) as refused:
                    await agent.submit(body(type="prompt_tuning"))
                assert (refused.value.status, refused.value.code) == (422, "invalid_request")
                with pytest.raises(EvolutionRequestError) as own:
                    own_id = (await agent.submit(body(type="configuration")))["request_id"]
                    await EvolutionClient(
                        "http://e.test", identity="alice@example.com", roles="reviewer", transport=transport
                    ).approve(own_id, "mine")
                assert (own.value.status, own.value.code) == (403, "self_review")
                page = await agent.list_requests(status="pending")
                assert page["total"] == 1

        async with EvolutionClient.embedded(settings.replace(database_url=f"sqlite:///{tmp_path / 'embedded.sqlite3'}")) as c:
            out = await c.submit(MINOR)
            assert out["status"] == "approved" and (await c.get(out["request_id"]))["approval_type"] == "auto_approve"

    run(scenario())


# -- running it ---------------------------------------------------------------------------------


def test_settings_from_environment(tmp_path: Path) -> None:
    env = {
        "ACGS_DATA_DIR": str(tmp_path),
        "ACGS_EVOLUTION_PORT": "9002",
        "ACGS_EVOLUTION_REVIEW_TIMEOUT": "90",
        "ACGS_EVOLUTION_DATABASE_URL": "postgresql://acgs:secret@db:5432/acgs",
    }
    settings = EvolutionSettings.from_env(env)
    assert settings.port == 9002 and settings.review_timeout == 90.0 and settings.data_dir == tmp_path
    assert settings.public()["database_url"] == "postgresql://acgs:***@db:5432/acgs"
    assert EvolutionSettings.from_env({"ACGS_DATA_DIR": str(tmp_path)}).resolved_database_url() == (
        f"sqlite:///{tmp_path / 'evolution.sqlite3'}"
    )
    with pytest.raises(ValueError, match="ACGS_EVOLUTION_VALIDITY"):
        EvolutionSettings.from_env({"ACGS_EVOLUTION_VALIDITY": "-1"})
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_store("mysql://x")


@pytest.mark.parametrize(
    "command",
    [["-m", "acgs.services.evolution"], ["-m", "acgs", "serve", "--service", "evolution"]],
    ids=["python-m", "acgs-serve"],
)
def test_the_service_runs_from_the_command_line(tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACGS_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.Popen(
        [sys.executable, *command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"the service did not come up:\n{out}")
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["constitutional_hash"] == HASH
        r = httpx.post(f"http://127.0.0.1:{port}/evolution/request", json=MINOR, timeout=10)
        assert r.status_code == 201 and r.json()["status"] == "approved"
        assert (tmp_path / "evolution.sqlite3").is_file()
        paths = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()["paths"]
        for verb in ("approve", "reject", "cancel", "deploy", "rollback"):
            assert f"/evolution/requests/{{request_id}}/{verb}" in paths
        assert "/evolution/request" in paths and "/evolution/requests" in paths
    finally:
        proc.terminate()
        proc.wait(30)


def test_sqlite_database_is_in_wal_mode(sqlite_url: str, tmp_path: Path) -> None:
    import sqlite3

    async def scenario() -> None:
        async with service(sqlite_url, tmp_path) as svc:
            await svc.submit(MINOR)

    run(scenario())
    conn = sqlite3.connect(tmp_path / "evolution.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = conn.execute("SELECT event FROM acgs_outbox ORDER BY seq").fetchall()
    assert [json.loads(r[0])["action"] for r in rows] == ["evolution.submit", "evolution.auto_approve"]
    conn.close()


def test_assessor_keeps_the_constitutions_types() -> None:
    assessor = Assessor.load(str(acgs.default_bundle_path()), "acgs/evolution/decision")
    assert assessor.known_types == {
        "minor_update", "patch", "configuration", "feature_addition", "major_update", "architecture_change"
    }
    assert Assessor.load(str(STRESS), "acgs/evolution/decision").known_types is None
    assert re.fullmatch(r"[0-9a-f]{64}", assessor.bundle_digest or "")


