"""``POST /evolution/actions`` decides the terms itself: the body's terms are claims.

The agent being governed submits its own calls for review, so the evolution service evaluates
the constitution's tool decision (``acgs/tools/decision``) itself, on the arguments sent and the
caller's trusted facts, against the real evolution app served by uvicorn on loopback. The body
can make the terms stricter (more reviewers, a shorter expiry), never laxer; a call the
constitution denies is refused and held for nobody; a call it allows needs no approval; the
arguments of a redacted tool are stored, shown and audited as their digest alone; the session's
history comes from the services' ledger, which learns how reviewers decided.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs.registry import new_agent, open_registry
from acgs.registry.settings import RegistrySettings
from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.evolution import EvolutionSettings, create_app
from acgs.services.evolution.assessment import Assessor
from acgs.trust.sessions import LocalSessionLedger
from tests.apps import evolution_events
from tests.services.conftest import ServerThread

AGENT = "agent-7"
#: The catalogue's payments.transfer: above 100 it needs two reviewers and 1800 s, arguments redacted.
IBAN = "DE89370400440532013000"
TRANSFER = {"amount": 500, "currency": "EUR", "to_account": IBAN}
CLAIMS = {"trust_level": 0.95}
#: The owner of a session in the ledger, with authentication off: the client's address.
OWNER = "address:127.0.0.1"


def reviewer(name: str) -> dict[str, str]:
    return {"X-ACGS-Identity": name, "X-ACGS-Role": "reviewer"}


def _settings(tmp_path: Path) -> EvolutionSettings:
    return EvolutionSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger() -> LocalSessionLedger:
    return LocalSessionLedger(100)


@pytest.fixture
def base(tmp_path: Path, clock: Clock, ledger: LocalSessionLedger) -> Iterator[str]:
    app = create_app(_settings(tmp_path), clock=clock, security=SecuritySettings(auth=False), session_ledger=ledger)
    with ServerThread(app) as server:
        yield f"http://127.0.0.1:{server.port}"


def action(decision_id: str, tool: str, arguments: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"agent_id": AGENT, "tool": tool, "decision_id": decision_id, "arguments": arguments, "agent": CLAIMS, **more}


def submit(base: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}/evolution/actions", json=body, headers={"X-ACGS-Identity": AGENT}, timeout=10)


def requests_in(base: str, **params: str) -> list[dict[str, Any]]:
    page = httpx.get(f"{base}/evolution/requests", params=params, headers=reviewer("auditor"), timeout=10).json()
    items: list[dict[str, Any]] = page["items"]
    return items




def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the terms are the service's ------------------------------------------------------------------


def test_the_catalogues_reviewers_stand_and_the_body_can_only_add(base: str) -> None:
    """The body asks for 1 reviewer where the catalogue says 2: 2. Asking for 5 is stricter:
    5. The terms older guards sent (reasons, risk, roles) are ignored."""
    laxer = submit(base, action("d-1", "payments.transfer", TRANSFER, reviewers_required=1, reasons=["trust me"], risk="low", roles=["anyone"]))
    assert laxer.status_code == 201, laxer.text
    record = laxer.json()
    assert record["reviewers_required"] == 2 and record["risk_level"] == "critical"
    assert record["reasons"] == ["argument amount (redacted) is above 100, which needs approval"]
    assert record["approval_type"] == "action_review" and record["roles"] == ["finance"] and record["labels"] == ["moves_money"]
    assert record["expires_seconds"] == 1800 and record["requested_terms"] == {"reviewers_required": 1}
    stricter = submit(base, action("d-2", "payments.transfer", TRANSFER, reviewers_required=5)).json()
    assert stricter["reviewers_required"] == 5

    # One reviewer's approval is not enough where the constitution asks for two.
    rid = record["request_id"]
    one = httpx.post(f"{base}/evolution/requests/{rid}/approve", json={"reason": "ok"}, headers=reviewer("alice"), timeout=10)
    assert one.status_code == 200 and one.json()["status"] == "pending"


def test_a_long_expiry_is_cut_to_the_constitutions_and_a_shorter_one_kept(base: str) -> None:
    long = submit(base, action("d-3", "payments.transfer", TRANSFER, expires_seconds=7 * 86400)).json()
    assert seconds(long["review_deadline"]) - seconds(long["created_at"]) == 1800  # the catalogue's
    short = submit(base, action("d-4", "payments.transfer", TRANSFER, expires_seconds=60)).json()
    assert seconds(short["review_deadline"]) - seconds(short["created_at"]) == 60


def test_a_denied_call_is_refused_403_and_held_for_nobody(base: str, tmp_path: Path) -> None:
    denied = submit(base, action("d-5", "read_file", {"path": "/etc/passwd"}))
    assert denied.status_code == 403, denied.text
    body = denied.json()
    assert body["code"] == "action_denied"
    assert any("/etc/passwd is not under any of: /workspace/" in r for r in body["reasons"])
    assert requests_in(base, status="pending") == []
    # Refused as the constitution refuses a change: a rejected request and its audit events.
    (record,) = requests_in(base)
    assert record["status"] == "rejected" and record["rejection"]["by"] == "constitution"
    assert record["reviewers_required"] == 0
    rid = record["request_id"]
    late = httpx.post(f"{base}/evolution/requests/{rid}/approve", json={"reason": "friendly"}, headers=reviewer("alice"), timeout=10)
    assert late.status_code == 409
    assert [e["action"] for e in evolution_events(tmp_path)] == ["evolution.submit", "evolution.reject"]
    # The same decision submitted again is refused again.
    again = submit(base, action("d-5", "read_file", {"path": "/etc/passwd"}))
    assert again.status_code == 403 and again.json()["code"] == "action_denied"
    # A tool the constitution denies outright, and a caller below the trust a tool needs.
    assert submit(base, action("d-6", "db.drop_table", {"table": "users"})).json()["code"] == "action_denied"
    untrusted = submit(base, {**action("d-7", "payments.transfer", TRANSFER), "agent": {"trust_level": 0.5}})
    assert untrusted.status_code == 403 and any("trust level of at least 0.9" in r for r in untrusted.json()["reasons"])


def test_an_allowed_call_needs_no_approval_409(base: str, tmp_path: Path) -> None:
    allowed = submit(base, action("d-8", "read_file", {"path": "/workspace/notes.txt"}))
    assert allowed.status_code == 409 and allowed.json()["code"] == "approval_not_required"
    assert allowed.json()["reasons"] == ["tool read_file is allowed with these arguments"]
    assert requests_in(base) == [] and evolution_events(tmp_path) == []


def test_redacted_arguments_appear_nowhere_but_as_their_digest(base: str, tmp_path: Path) -> None:
    canonical = json.dumps(TRANSFER, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(canonical).hexdigest()
    held = submit(base, action("d-9", "payments.transfer", TRANSFER, arguments_sha256=digest))
    assert held.status_code == 201, held.text
    record = held.json()
    assert record["submission"]["arguments_sha256"] == digest and record["submission"]["arguments_redacted"] is True
    assert "arguments" not in record["submission"] and "redact_arguments" in record["conditions"]
    rid = record["request_id"]
    with httpx.Client(base_url=base, headers=reviewer("rita"), timeout=10) as http:
        shown = [
            held.text,
            http.get(f"/evolution/requests/{rid}").text,
            http.get("/evolution/requests").text,
            http.get("/evolution/review").text,
            http.get(f"/evolution/review/{rid}").text,
        ]
        assert http.post(f"/evolution/requests/{rid}/reject", json={"reason": "no"}).status_code == 200
    shown.append(json.dumps(evolution_events(tmp_path)))
    for text in shown:
        assert IBAN not in text and '"amount"' not in text
    assert digest in shown[3]  # the review page shows the digest
    # A wrong digest is refused.
    wrong = submit(base, action("d-10", "payments.transfer", TRANSFER, arguments_sha256="0" * 64))
    assert wrong.status_code == 422


def test_the_body_cannot_send_trusted_facts_or_leave_out_the_arguments(base: str) -> None:
    forged = submit(base, {**action("d-11", "payments.transfer", TRANSFER), "trusted": {"agent": {"trust_level": 1}}})
    assert forged.status_code == 422
    blind = submit(base, {k: v for k, v in action("d-12", "send_email", {}).items() if k != "arguments"})
    assert blind.status_code == 422 and blind.json()["errors"][0]["field"] == "arguments"


def test_an_engine_fault_is_a_deny(tmp_path: Path) -> None:
    broken = Assessor(None, "acgs/evolution/decision", load_error="cannot load the policy bundle: gone")
    app = create_app(_settings(tmp_path), assessor=broken, security=SecuritySettings(auth=False))
    with ServerThread(app) as server:
        r = submit(f"http://127.0.0.1:{server.port}", action("d-13", "send_email", {"to": "a@example.com", "subject": "hi"}))
    assert r.status_code == 403 and r.json()["code"] == "action_denied"
    assert r.json()["reasons"] == ["policy engine fault: cannot load the policy bundle: gone"]


# -- the session ledger ---------------------------------------------------------------------------


def test_reviewers_verdicts_settle_the_session_ledger(base: str, ledger: LocalSessionLedger, clock: Clock) -> None:
    """The policy service recorded each call as require_approval; the review's end settles it:
    approved, rejected, and expired (a deny)."""
    email = {"to": "a@example.com", "subject": "q3"}
    for decision_id in ("p-1", "p-2", "p-3"):
        ledger.record_now(OWNER, "s-1", decision_id, "send_email", "require_approval", ["sends_data_out"])
    ids = {}
    for decision_id in ("p-1", "p-2", "p-3"):
        r = submit(base, action(decision_id, "send_email", email, session_id="s-1"))
        assert r.status_code == 201, r.text
        ids[decision_id] = r.json()["request_id"]
    with httpx.Client(base_url=base, headers=reviewer("rita"), timeout=10) as http:
        assert http.post(f"/evolution/requests/{ids['p-1']}/approve", json={"reason": "ok"}).json()["status"] == "approved"
        assert http.post(f"/evolution/requests/{ids['p-2']}/reject", json={"reason": "no"}).json()["status"] == "rejected"
        clock.now += 3601
        assert http.get(f"/evolution/requests/{ids['p-3']}").json()["status"] == "expired"
    outcomes = [e["outcome"] for e in json.loads(ledger.history_now(OWNER, "s-1"))]
    assert outcomes == ["approved", "rejected", "rejected"]


def test_another_callers_session_entry_is_never_settled(base: str, ledger: LocalSessionLedger) -> None:
    ledger.record_now("key:someone-else", "s-1", "p-9", "send_email", "require_approval", ["sends_data_out"])
    r = submit(base, action("p-9", "send_email", {"to": "a@example.com", "subject": "x"}, session_id="s-1"))
    rid = r.json()["request_id"]
    assert httpx.post(f"{base}/evolution/requests/{rid}/reject", json={"reason": "no"}, headers=reviewer("rita"), timeout=10).status_code == 200
    assert [e["outcome"] for e in json.loads(ledger.history_now("key:someone-else", "s-1"))] == ["require_approval"]


def test_the_session_history_is_the_ledgers(base: str, ledger: LocalSessionLedger) -> None:
    """After the session read a secret (as the policy service recorded it), sending data out is
    denied by the session rule, whatever the agent says about its session."""
    ledger.record_now(OWNER, "s-2", "p-10", "read_secret", "allow", ["reads_secrets"])
    args = {"url": "https://api.github.com/repos/acme/app/issues", "body": "the key"}
    r = submit(base, action("p-11", "http_post", args, session_id="s-2"))
    assert r.status_code == 403, r.text
    assert any("no_exfiltration_after_secrets" in reason for reason in r.json()["reasons"])
    # Another session of the same caller, or none: the rule reads the caller's calls across its
    # sessions, so a new session id sheds nothing.
    for decision_id, session_id in (("p-12", "s-3"), ("p-13", None)):
        r = submit(base, action(decision_id, "http_post", args, session_id=session_id))
        assert r.status_code == 403 and r.json()["code"] == "action_denied", r.text
        assert any("no_exfiltration_after_secrets" in reason for reason in r.json()["reasons"])


def test_a_submission_cannot_shed_an_entry_by_naming_its_decision(base: str, ledger: LocalSessionLedger) -> None:
    """The service leaves a call's own entry out of the history it decides on (a call is never
    its own predecessor), but only the entry of the submitted decision id when the ledger holds
    it as this caller's call of the same tool in the same session. A send submitted under the
    decision id of the secret read it follows, or of another caller's read, is still denied."""
    ledger.record_now(OWNER, "s-8", "p-40", "read_secret", "require_approval", ["reads_secrets"])
    ledger.record_now("key:someone-else", "s-8", "p-41", "http_post", "require_approval", ["network", "sends_data_out"])
    args = {"url": "https://api.github.com/repos/acme/app/issues", "body": "the key"}
    for decision_id in ("p-40", "p-41"):
        r = submit(base, action(decision_id, "http_post", args, session_id="s-8"))
        assert r.status_code == 403 and r.json()["code"] == "action_denied", r.text
        assert any("no_exfiltration_after_secrets" in reason for reason in r.json()["reasons"])
    assert [e["outcome"] for e in json.loads(ledger.history_now(OWNER, "s-8"))] == ["require_approval"]


# -- authentication on ----------------------------------------------------------------------------


def test_with_auth_the_registry_decides_the_trust_and_the_agent_is_the_caller(tmp_path: Path) -> None:
    security = SecuritySettings(auth=True, data_dir=tmp_path / "keys")
    security.validate()
    registry = RegistrySettings(url=f"sqlite:///{tmp_path / 'agents.sqlite3'}")

    async def setup() -> list[str]:
        agents = open_registry(registry.resolved_url())
        await agents.add(new_agent(AGENT, trust_level=Decimal("0.95")))
        await agents.add(new_agent("agent-low", trust_level=Decimal("0.5")))
        store = open_key_store(security.resolved_key_store())
        return [(await create_key(store, name, ["agent"]))[1] for name in (AGENT, "agent-low")]

    agent_key, low_key = asyncio.run(setup())
    app = create_app(_settings(tmp_path), security=security, agent_registry=registry)
    with ServerThread(app) as server, httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
        def post(key: str, body: dict[str, Any]) -> httpx.Response:
            return http.post("/evolution/actions", json=body, headers={"Authorization": f"Bearer {key}"})

        assert post(agent_key, action("a-1", "payments.transfer", TRANSFER)).status_code == 201
        # Registered at 0.5, the claim of 0.95 does not raise it.
        low = post(low_key, {**action("a-2", "payments.transfer", TRANSFER), "agent_id": "agent-low"})
        assert low.status_code == 403 and any("the caller has 0.5" in r for r in low.json()["reasons"])
        # Nor can it submit in another agent's name.
        other = post(low_key, action("a-3", "payments.transfer", TRANSFER))
        assert other.status_code == 403 and other.json()["code"] == "forbidden"


def test_a_remote_guards_pending_call_is_settled_where_the_policy_service_recorded_it(tmp_path: Path) -> None:
    """As in ``acgs serve``: the policy service and the evolution service share one ledger. The
    remote guard's decision (recorded as require_approval) is the action request's decision
    id; the reviewer's approval settles it, and the resumed call runs, leaving no second entry
    (it names the decision that asked, which the policy service confirms in its record)."""
    from acgs.guard import Guard, ReviewApprover
    from acgs.services.policy import PolicySettings
    from acgs.services.policy import create_app as policy_app

    shared = LocalSessionLedger(100)
    security = SecuritySettings(auth=False)
    policy = policy_app(PolicySettings(data_dir=tmp_path / "policy"), security=security, session_ledger=shared)
    evolution = create_app(_settings(tmp_path), security=security, session_ledger=shared)
    email = {"to": "ann@example.com", "subject": "q3"}
    with ServerThread(policy) as p, ServerThread(evolution) as e:
        evo = f"http://127.0.0.1:{e.port}"
        ran: list[str] = []
        with Guard(url=f"http://127.0.0.1:{p.port}", agent_id=AGENT, session_id="s-e2e", approver=ReviewApprover(evo, timeout=0)) as guard:
            with pytest.raises(acgs.ApprovalPending) as caught:
                guard.call("send_email", email, lambda: ran.append("early"))
            assert json.loads(shared.history_now(OWNER, "s-e2e")) == [
                {"tool": "send_email", "outcome": "require_approval", "labels": ["sends_data_out"]}
            ]
            rid = caught.value.request_id
            ok = httpx.post(f"{evo}/evolution/requests/{rid}/approve", json={"reason": "fine"}, headers=reviewer("rita"), timeout=10)
            assert ok.status_code == 200 and ok.json()["status"] == "approved"
            assert ok.json()["decision_id"] == caught.value.decision_id
            assert guard.resume(caught.value, "send_email", email, lambda: ran.append("sent") or "sent") == "sent"
    assert ran == ["sent"]
    outcomes = [entry["outcome"] for entry in json.loads(shared.history_now(OWNER, "s-e2e"))]
    assert outcomes == ["approved"]
