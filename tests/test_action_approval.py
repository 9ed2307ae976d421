"""Approval of a single tool call through the evolution service's review workflow: a guard on
the real constitution (``acgs/tools/decision`` in the shipped bundle) with a ``ReviewApprover``
against the real evolution app served by uvicorn on loopback, reviewers acting over REST, the
guard's ``tool_call`` events in a real ``AuditLog`` and the service's transitions in its outbox.
The service decides each call again itself (tests/security/test_action_terms.py holds it to
its own terms); with authentication off the agent's trust claim stands, so the approver sends
the guard's (``agent=``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs.audit.events import EventFilter
from acgs.audit.log import AuditLog
from acgs.guard import Guard, ReviewApprover, ToolDecision
from acgs.guard import approval
from acgs.registry import new_agent, open_registry
from acgs.registry.settings import RegistrySettings
from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.evolution import EvolutionSettings, create_app
from acgs.services.evolution.webhooks import verify_signature
from tests.apps import evolution_events
from tests.services.conftest import ServerThread
from tests.services.test_evolution_webhooks import SECRET, Receiver

TRUSTED = {"agent": {"trust_level": 0.95}}
#: The agent's claim about itself, sent with each submission (auth off: it stands).
CLAIMS = TRUSTED["agent"]
#: Above the catalogue's approve_above (100): two reviewers, arguments redacted.
TRANSFER = {"amount": 500, "currency": "EUR", "to_account": "DE89370400440532013000"}
AGENT = "agent-7"


def reviewer(name: str) -> dict[str, str]:
    return {"X-ACGS-Identity": name, "X-ACGS-Role": "reviewer"}


class Clock:
    """The evolution service's clock, moved by the test (expiry without waiting)."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    return acgs.Engine.load(acgs.default_bundle_path())


def _settings(tmp_path: Path) -> EvolutionSettings:
    return EvolutionSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> Iterator[ServerThread]:
    app = create_app(_settings(tmp_path), clock=clock, security=SecuritySettings(auth=False))
    with ServerThread(app) as server:
        yield server


def url(server: ServerThread) -> str:
    return f"http://127.0.0.1:{server.port}"


def review_when_pending(base: str, verdicts: list[tuple[str, str]], headers: Any = reviewer) -> threading.Thread:
    """A reviewer thread: waits for the pending action request, then posts each (who, verdict)."""

    def run() -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while True:
                page = http.get("/evolution/requests", params={"status": "pending"}, headers=headers("watcher")).json()
                if page["items"]:
                    break
            request_id = page["items"][0]["request_id"]
            for who, verdict in verdicts:
                r = http.post(f"/evolution/requests/{request_id}/{verdict}", json={"reason": f"{who} says {verdict}"}, headers=headers(who))
                assert r.status_code == 200, r.text

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def tool_events(log: AuditLog) -> list[dict[str, Any]]:
    stored = asyncio.run(log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=1000))
    return [s.event() for s in stored]




# -- waiting for reviewers -----------------------------------------------------------------------


def test_a_transfer_waits_for_two_reviewers_then_runs_and_shares_one_decision_id(
    engine: acgs.Engine, audit_log: AuditLog, service: ServerThread, tmp_path: Path
) -> None:
    base = url(service)
    approver = ReviewApprover(base, agent=CLAIMS, timeout=30, poll=0.02)
    ran: list[dict[str, Any]] = []
    with Guard(engine, agent_id=AGENT, session_id="s-1", approver=approver, audit=audit_log, trusted=TRUSTED) as guard:
        thread = review_when_pending(base, [("alice", "approve"), ("bob", "approve")])
        result = guard.call("payments.transfer", TRANSFER, lambda: ran.append(TRANSFER) or "sent")
        thread.join(10)
        assert result == "sent" and ran == [TRANSFER]
        assert guard.flush()

    (event,) = tool_events(audit_log)
    assert event["result"] == "approved" and event["action"] == "tool.payments.transfer"
    decision_id = event["decision_id"]
    with httpx.Client(base_url=base) as http:
        page = http.get("/evolution/requests", headers=reviewer("auditor")).json()
    (record,) = page["items"]
    assert record["kind"] == "action" and record["decision_id"] == decision_id
    assert record["status"] == "deployed" and record["reviewers_required"] == 2
    assert [a["reviewer"] for a in record["approvals"]] == ["alice", "bob"]
    # Redacted by the catalogue: the reviewer sees the digest, never the arguments.
    submission = record["submission"]
    assert "arguments" not in submission and submission["arguments_sha256"] == event["metadata"]["arguments_sha256"]
    assert submission["session_id"] == "s-1" and submission["tool"] == "payments.transfer"
    assert any("amount" in r for r in record["reasons"])

    events = evolution_events(tmp_path)
    assert [e["action"] for e in events] == [
        "evolution.submit", "evolution.approval_recorded", "evolution.approve", "evolution.deploy",
    ]  # fmt: skip
    assert {e["decision_id"] for e in events} == {decision_id}
    assert all(e["event_type"] == "evolution_transition" for e in events)


def test_a_wrapped_tool_waits_for_its_reviewer_too(engine: acgs.Engine, audit_log: AuditLog, service: ServerThread) -> None:
    """The approver sees the call of a ``@guard.tool`` function as it sees ``guard.call``'s."""
    base = url(service)
    with Guard(engine, agent_id=AGENT, session_id="s-w", approver=ReviewApprover(base, agent=CLAIMS, timeout=30, poll=0.02), audit=audit_log, trusted=TRUSTED) as guard:

        @guard.tool("payments.transfer")
        def transfer(**kwargs: Any) -> str:
            return f"sent {kwargs['amount']}"

        thread = review_when_pending(base, [("alice", "approve"), ("bob", "approve")])
        assert transfer(**TRANSFER) == f"sent {TRANSFER['amount']}"
        thread.join(10)


def test_a_rejected_call_raises_tool_denied_and_never_runs(engine: acgs.Engine, service: ServerThread) -> None:
    base = url(service)
    ran: list[str] = []
    with Guard(engine, agent_id=AGENT, approver=ReviewApprover(base, agent=CLAIMS, timeout=30, poll=0.02), trusted=TRUSTED) as guard:
        thread = review_when_pending(base, [("alice", "reject")])
        with pytest.raises(acgs.ToolDenied) as caught:
            guard.call("payments.transfer", TRANSFER, lambda: ran.append("ran"))
        thread.join(10)
    assert caught.value.outcome == "rejected" and ran == []
    assert guard.history.snapshot()[-1]["outcome"] == "rejected"


def test_arguments_are_shown_unless_redacted_and_the_review_page_lists_the_action(
    engine: acgs.Engine, service: ServerThread
) -> None:
    base = url(service)
    args = {"url": "https://api.github.com/repos/acme/app/issues", "body": "quarterly numbers"}
    with Guard(engine, agent_id=AGENT, session_id="s-9", approver=ReviewApprover(base, agent=CLAIMS, timeout=0), trusted=TRUSTED) as guard:
        decision = guard.decide("http_post", args)
        assert decision.outcome == "require_approval" and not decision.redact_arguments
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call("http_post", args, lambda: "sent")
    pending = caught.value
    assert isinstance(pending, acgs.ApprovalRequired) and pending.request_id.startswith("act_")
    with httpx.Client(base_url=base) as http:
        record = http.get(f"/evolution/requests/{pending.request_id}", headers=reviewer("carol")).json()
        assert record["submission"]["arguments"] == args and record["status"] == "pending"
        page = http.get("/evolution/review", headers=reviewer("carol")).text
    assert "tool call http_post by agent agent-7" in page and "quarterly numbers" in page and "s-9" in page


# -- idempotency, resume, expiry -----------------------------------------------------------------


def test_one_decision_is_one_request_however_often_submitted(service: ServerThread) -> None:
    body = {"agent_id": AGENT, "tool": "send_email", "decision_id": "d-1", "arguments": {"to": "a@example.com", "subject": "hi"}}
    with httpx.Client(base_url=url(service), headers={"X-ACGS-Identity": AGENT}) as http:
        first = http.post("/evolution/actions", json=body)
        again = http.post("/evolution/actions", json=body)
        other = http.post("/evolution/actions", json={**body, "arguments": {"to": "b@example.com", "subject": "hi"}})
        blind = http.post("/evolution/actions", json={k: v for k, v in body.items() if k != "arguments"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["request_id"] == again.json()["request_id"]
    assert other.status_code == 409 and other.json()["code"] == "decision_reused"
    assert blind.status_code == 422 and blind.json()["code"] == "invalid_request"


def test_a_pending_handle_resumes_once_approved_and_runs_once(
    engine: acgs.Engine, audit_log: AuditLog, service: ServerThread
) -> None:
    base = url(service)
    approver = ReviewApprover(base, agent=CLAIMS, timeout=0)
    ran: list[str] = []
    with Guard(engine, agent_id=AGENT, approver=approver, audit=audit_log, trusted=TRUSTED) as guard:
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call("payments.transfer", TRANSFER, lambda: ran.append("first"))
        handle = caught.value.handle()  # what an agent checkpoints
        assert ran == [] and handle["tool"] == "payments.transfer"
        # Still pending: resuming says so again, and runs nothing.
        with pytest.raises(acgs.ApprovalPending):
            guard.resume(handle, "payments.transfer", TRANSFER, lambda: ran.append("early"))
        with httpx.Client(base_url=base) as http:
            for who in ("alice", "bob"):
                r = http.post(f"/evolution/requests/{handle['request_id']}/approve", json={"reason": "ok"}, headers=reviewer(who))
                assert r.status_code == 200
        # Other arguments are not what was approved.
        with pytest.raises(acgs.ToolDenied):
            guard.resume(handle, "payments.transfer", {**TRANSFER, "amount": 9000}, lambda: ran.append("other"))

        async def later() -> Any:
            async def run() -> str:
                ran.append("resumed")
                return "sent"

            return await approval.aresume(guard, handle, "payments.transfer", TRANSFER, run)

        assert asyncio.run(later()) == "sent" and ran == ["resumed"]
        # One approval runs one call.
        with pytest.raises(acgs.ToolDenied):
            guard.resume(handle, "payments.transfer", TRANSFER, lambda: ran.append("twice"))
        assert ran == ["resumed"]
        assert guard.flush()
    results = [e["result"] for e in tool_events(audit_log)]
    assert results.count("approved") == 1


def test_expiry_is_a_deny(engine: acgs.Engine, service: ServerThread, clock: Clock) -> None:
    base = url(service)
    with Guard(engine, agent_id=AGENT, approver=ReviewApprover(base, agent=CLAIMS, timeout=0), trusted=TRUSTED) as guard:
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call("payments.transfer", TRANSFER, lambda: "sent")
        clock.now += 1801  # past the catalogue's expires_seconds (1800)
        ran: list[str] = []
        with pytest.raises(acgs.ToolDenied) as denied:
            guard.resume(caught.value, "payments.transfer", TRANSFER, lambda: ran.append("ran"))
    assert ran == [] and denied.value.outcome == "rejected"
    with httpx.Client(base_url=base) as http:
        record = http.get(f"/evolution/requests/{caught.value.request_id}", headers=reviewer("alice")).json()
        assert record["status"] == "expired" and record["history"][-1]["actor"] == "acgs"
        late = http.post(f"/evolution/requests/{caught.value.request_id}/approve", json={"reason": "late"}, headers=reviewer("alice"))
        assert late.status_code == 409


def test_an_async_tool_waits_without_blocking_the_loop(engine: acgs.Engine, service: ServerThread) -> None:
    base = url(service)

    async def main() -> Any:
        async with Guard(engine, agent_id=AGENT, approver=ReviewApprover(base, agent=CLAIMS, timeout=30, poll=0.02), trusted=TRUSTED) as guard:
            async def reviewers() -> None:
                async with httpx.AsyncClient(base_url=base) as http:
                    while not (await http.get("/evolution/requests", params={"status": "pending"}, headers=reviewer("w"))).json()["items"]:
                        await asyncio.sleep(0.01)
                    page = (await http.get("/evolution/requests", params={"status": "pending"}, headers=reviewer("w"))).json()
                    for who in ("alice", "bob"):
                        rid = page["items"][0]["request_id"]
                        assert (await http.post(f"/evolution/requests/{rid}/approve", json={"reason": "ok"}, headers=reviewer(who))).status_code == 200

            async def run() -> str:
                return "sent"

            task = asyncio.create_task(reviewers())
            result = await guard.acall("payments.transfer", TRANSFER, run)
            await task
            return result

    assert asyncio.run(main()) == "sent"


# -- authentication on: the agent cannot approve its own call ------------------------------------


def test_with_auth_the_agent_cannot_approve_its_own_call(engine: acgs.Engine, tmp_path: Path) -> None:
    security = SecuritySettings(auth=True, data_dir=tmp_path / "keys")
    security.validate()

    registry = RegistrySettings(url=f"sqlite:///{tmp_path / 'agents.sqlite3'}")

    async def keys() -> list[str]:
        # With authentication on, the service believes the registry's trust level (0.95 here).
        await open_registry(registry.resolved_url()).add(new_agent(AGENT, trust_level=Decimal("0.95")))
        store = open_key_store(security.resolved_key_store())
        # The agent's key also holds the reviewer role: the workflow still refuses it.
        wanted = ((AGENT, ["agent", "reviewer"]), ("agent-8", ["agent"]), ("rita", ["reviewer"]))
        return [(await create_key(store, name, roles))[1] for name, roles in wanted]

    agent_key, other_key, reviewer_key = asyncio.run(keys())

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    app = create_app(_settings(tmp_path), security=security, agent_registry=registry)
    with ServerThread(app) as server:
        base = url(server)
        with Guard(engine, agent_id=AGENT, approver=ReviewApprover(base, agent_key, agent=CLAIMS, timeout=0), trusted=TRUSTED) as guard:
            with pytest.raises(acgs.ApprovalPending) as caught:
                guard.call("payments.transfer", TRANSFER, lambda: "sent")
        rid = caught.value.request_id
        with httpx.Client(base_url=base) as http:
            own = http.post(f"/evolution/requests/{rid}/approve", json={"reason": "mine"}, headers=bearer(agent_key))
            assert own.status_code == 403 and own.json()["code"] == "self_review"
            # The agent reads its own request; another agent neither reads it nor submits in its name.
            assert http.get(f"/evolution/requests/{rid}", headers=bearer(agent_key)).json()["kind"] == "action"
            assert http.get(f"/evolution/requests/{rid}", headers=bearer(other_key)).status_code == 404
            forged = http.post(
                "/evolution/actions",
                json={"agent_id": AGENT, "tool": "http_post", "decision_id": "d-9", "arguments": {}},
                headers=bearer(other_key),
            )
            assert forged.status_code == 403
            ok = http.post(f"/evolution/requests/{rid}/approve", json={"reason": "fine"}, headers=bearer(reviewer_key))
            assert ok.status_code == 200 and ok.json()["status"] == "pending"  # one of two
            again = http.post(f"/evolution/requests/{rid}/approve", json={"reason": "twice"}, headers=bearer(reviewer_key))
            assert again.status_code == 409 and again.json()["code"] == "already_approved"


def test_every_transition_of_an_action_is_a_signed_webhook(engine: acgs.Engine, tmp_path: Path) -> None:
    with Receiver() as receiver:
        settings = _settings(tmp_path)
        settings = EvolutionSettings(
            data_dir=settings.data_dir, database_url=settings.database_url, sweep_interval=3600.0,
            webhook_urls=(receiver.url,), webhook_secret=SECRET, relay_interval=0.05,
        )  # fmt: skip
        with ServerThread(create_app(settings, security=SecuritySettings(auth=False))) as server:
            base = url(server)
            with Guard(engine, agent_id=AGENT, approver=ReviewApprover(base, agent=CLAIMS, timeout=0), trusted=TRUSTED) as guard:
                with pytest.raises(acgs.ApprovalPending) as caught:
                    guard.call("payments.transfer", TRANSFER, lambda: "sent")
            with httpx.Client(base_url=base) as http:
                r = http.post(f"/evolution/requests/{caught.value.request_id}/reject", json={"reason": "no"}, headers=reviewer("rita"))
                assert r.status_code == 200
            deadline = time.monotonic() + 30
            while len(receiver.accepted) < 2:
                assert time.monotonic() < deadline, "the webhooks did not arrive"
                time.sleep(0.02)
    bodies = receiver.bodies()
    assert [b["type"] for b in bodies] == ["evolution.submit", "evolution.reject"]
    assert {b["kind"] for b in bodies} == {"action"} and {b["decision_id"] for b in bodies} == {caught.value.decision_id}
    assert bodies[0]["event"]["metadata"]["tool"] == "payments.transfer"
    for headers, body in receiver.accepted:
        assert verify_signature(SECRET, headers["x-acgs-signature"], body)


# -- the service's own decision ------------------------------------------------------------------


def test_the_services_refusal_reaches_the_caller_with_its_reasons(engine: acgs.Engine, service: ServerThread) -> None:
    """The guard believes its embedding program's trust (0.95); the approver is configured to
    claim less (0.5, which wins over the guard's facts) and the service, with authentication off,
    believes that claim: it denies the transfer, and nothing is held."""
    base = url(service)
    ran: list[str] = []
    with Guard(engine, agent_id=AGENT, approver=ReviewApprover(base, agent={"trust_level": 0.5}, timeout=0), trusted=TRUSTED) as guard:
        with pytest.raises(acgs.ToolDenied) as caught:
            guard.call("payments.transfer", TRANSFER, lambda: ran.append("ran"))
    assert ran == [] and caught.value.outcome == "deny"
    assert any("trust level of at least 0.9" in r for r in caught.value.reasons)
    assert "denied by the evolution service" in str(caught.value)
    with httpx.Client(base_url=base) as http:
        assert http.get("/evolution/requests", params={"status": "pending"}, headers=reviewer("w")).json()["items"] == []


def test_a_call_the_service_allows_gets_no_approval(service: ServerThread) -> None:
    """An approver asked about a call the service finds allowed refuses it: an approval the
    call never needed is not given."""
    decision = ToolDecision("require_approval", "d-allowed", "read_file", ["asked anyway"], approval={"reviewers": 1, "expires_seconds": 60, "roles": []})
    call = approval.ActionCall(AGENT, None, "read_file", {"path": "/workspace/a.txt"})
    with approval._calling(call), pytest.raises(acgs.ToolDenied) as caught:
        ReviewApprover(url(service), timeout=0)(decision)
    assert caught.value.outcome == "rejected" and caught.value.reasons == ["tool read_file is allowed with these arguments"]


def test_a_pending_handle_carries_the_services_terms(engine: acgs.Engine, service: ServerThread) -> None:
    with Guard(engine, agent_id=AGENT, approver=ReviewApprover(url(service), agent=CLAIMS, timeout=0), trusted=TRUSTED) as guard:
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call("payments.transfer", TRANSFER, lambda: "sent")
    pending = caught.value
    assert pending.approval is not None and pending.approval["reviewers"] == 2 and pending.approval["roles"] == ["finance"]
    assert pending.reasons == ["argument amount (redacted) is above 100, which needs approval"]
    assert "(0 of 2 approvals, review by " in str(pending)
