"""A call held for review and resumed later through a remote guard is one call in the services'
record of the session, and never its own predecessor.

Real policy and evolution services (uvicorn on loopback) share one session ledger, as under
``acgs serve``; a remote ``Guard`` asks the policy service and its ``ReviewApprover`` the
evolution service; a reviewer approves or rejects over REST. The call that asked for approval
is recorded once (``require_approval``), the review settles that entry, and the resumed call,
decided afresh, adds none. A tool that both reads private data and sends data out (a catalogue
entry carrying an ``after`` label and a ``deny`` label of the same session rule) is held for
review and runs once approved, instead of being denied by its own entry; a second call of it
is still denied by the first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs.guard import Guard, ReviewApprover
from acgs.security import SecuritySettings
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution import create_app as evolution_app
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from acgs.trust.sessions import LocalSessionLedger
from tests.security.test_session_history import edited_bundle
from tests.services.conftest import ServerThread

AGENT = "agent-r"
#: The owner of a session in the ledger, with authentication off: the client's address.
OWNER = "address:127.0.0.1"
EMAIL = {"to": "ann@example.com", "subject": "q3"}
#: A tool that reads customer records and sends them out: both labels of the shipped rule.
EXPORT = "crm.export"
EXPORT_ARGS = {"customer": "c-1", "to": "https://partner.example.com/import"}
BOTH = ["reads_private_data", "sends_data_out"]





def reviewer(name: str) -> dict[str, str]:
    return {"X-ACGS-Identity": name, "X-ACGS-Role": "reviewer"}


def export_bundle(tmp_path: Path) -> Path:
    def add(tools: dict[str, Any]) -> None:
        tools["catalogue"][EXPORT] = {
            "outcome": "require_approval",
            "risk": "high",
            "labels": BOTH,
            "approval": {"reviewers": 1, "expires_seconds": 600, "roles": ["reviewer"]},
        }

    return edited_bundle(tmp_path, add)


@dataclass
class Services:
    policy: str
    evolution: str
    ledger: LocalSessionLedger

    def guard(self, session_id: str) -> Guard:
        return Guard(url=self.policy, agent_id=AGENT, session_id=session_id, approver=ReviewApprover(self.evolution, timeout=0))

    def review(self, request_id: str, verdict: str) -> dict[str, Any]:
        url = f"{self.evolution}/evolution/requests/{request_id}/{verdict}"
        r = httpx.post(url, json={"reason": "r"}, headers=reviewer("rita"), timeout=10)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def entries(self, session_id: str) -> list[dict[str, Any]]:
        session, principal = self.ledger.histories_now(OWNER, session_id)
        # One session of this caller in these tests: the two records agree.
        assert json.loads(session) == json.loads(principal)
        out: list[dict[str, Any]] = json.loads(session)
        return out


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    bundle = export_bundle(tmp_path)
    ledger = LocalSessionLedger(100)
    security = SecuritySettings(auth=False)
    policy = policy_app(PolicySettings(data_dir=tmp_path / "policy", bundle=bundle), security=security, session_ledger=ledger)
    evolution = evolution_app(
        EvolutionSettings(
            data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0, bundle=bundle
        ),
        security=security,
        session_ledger=ledger,
    )
    with ServerThread(policy) as p, ServerThread(evolution) as e:
        yield Services(f"http://127.0.0.1:{p.port}", f"http://127.0.0.1:{e.port}", ledger)


def test_a_resumed_call_is_one_entry_settled_by_its_review(services: Services) -> None:
    ran: list[str] = []
    with services.guard("s-1") as guard:
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call("send_email", EMAIL, lambda: ran.append("early"))
        pending = {"tool": "send_email", "outcome": "require_approval", "labels": ["sends_data_out"]}
        assert services.entries("s-1") == [pending]
        # Resumed before reviewers decided, by the request id alone: still waiting, no second
        # entry; the new handle names the decision that asked, as the first did.
        with pytest.raises(acgs.ApprovalPending) as again:
            guard.resume(caught.value.request_id, "send_email", EMAIL, lambda: ran.append("too early"))
        assert again.value.handle() == caught.value.handle()
        assert services.entries("s-1") == [pending]
        assert services.review(caught.value.request_id, "approve")["status"] == "approved"
        assert services.entries("s-1") == [{**pending, "outcome": "approved"}]
        assert guard.resume(again.value, "send_email", EMAIL, lambda: ran.append("sent") or "sent") == "sent"
    assert ran == ["sent"]
    assert services.entries("s-1") == [{**pending, "outcome": "approved"}]


def test_a_rejected_call_resumed_is_refused_and_stays_one_rejected_entry(services: Services) -> None:
    ran: list[str] = []
    with services.guard("s-2") as guard:
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call("send_email", EMAIL, lambda: ran.append("early"))
        services.review(caught.value.request_id, "reject")
        with pytest.raises(acgs.ToolDenied) as refused:
            guard.resume(caught.value.handle(), "send_email", EMAIL, lambda: ran.append("ran"))
        assert refused.value.outcome == "rejected"
    assert ran == []
    assert services.entries("s-2") == [{"tool": "send_email", "outcome": "rejected", "labels": ["sends_data_out"]}]


def test_a_tool_with_both_labels_is_held_for_review_not_denied_by_itself(services: Services) -> None:
    """Submitted for review, the evolution service decides the call on the ledger's history,
    which holds the call's own entry (the policy service recorded it): left out, the call is
    held for review. Approved, it runs once. A second export is denied by the first."""
    ran: list[str] = []
    with services.guard("s-3") as guard:
        with pytest.raises(acgs.ApprovalPending) as caught:
            guard.call(EXPORT, EXPORT_ARGS, lambda: ran.append("early"))
        services.review(caught.value.request_id, "approve")
        assert guard.resume(caught.value, EXPORT, EXPORT_ARGS, lambda: ran.append("exported") or "ok") == "ok"
        assert services.entries("s-3") == [{"tool": EXPORT, "outcome": "approved", "labels": BOTH}]
        with pytest.raises(acgs.ToolDenied) as denied:
            guard.call(EXPORT, {**EXPORT_ARGS, "customer": "c-2"}, lambda: ran.append("second"))
        assert denied.value.outcome == "deny"
        assert any("no_exfiltration_after_secrets" in r and EXPORT in r for r in denied.value.reasons)
    assert ran == ["exported"]


def test_resuming_another_calls_request_is_refused(services: Services) -> None:
    """A handle names the decision that asked; resumed with another call's handle (or a handle
    whose decision id was edited), the approver refuses: the request approves one call."""
    ran: list[str] = []
    with services.guard("s-4") as guard:
        with pytest.raises(acgs.ApprovalPending) as first:
            guard.call("send_email", EMAIL, lambda: ran.append("early"))
        services.review(first.value.request_id, "approve")
        forged = {**first.value.handle(), "decision_id": "some-other-decision"}
        with pytest.raises(acgs.ToolDenied) as refused:
            guard.resume(forged, "send_email", EMAIL, lambda: ran.append("forged"))
        assert "is not an approval of this call" in str(refused.value)
        with pytest.raises(acgs.ToolDenied):
            guard.resume(first.value, "send_email", {**EMAIL, "to": "eve@example.com"}, lambda: ran.append("other"))
    assert ran == []


def test_in_process_a_resumed_call_is_one_entry_in_the_guards_history(tmp_path: Path) -> None:
    """The same in process: the guard's own history (the one its decisions are judged on) keeps
    one entry per call, settled by the review; the export is not denied by itself."""
    bundle = export_bundle(tmp_path)
    app = evolution_app(
        EvolutionSettings(
            data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0, bundle=bundle
        ),
        security=SecuritySettings(auth=False),
    )
    ran: list[str] = []
    with ServerThread(app) as e:
        url = f"http://127.0.0.1:{e.port}"
        with Guard(acgs.Engine.load(bundle), agent_id=AGENT, approver=ReviewApprover(url, timeout=0)) as guard:
            for tool, args in (("send_email", EMAIL), (EXPORT, EXPORT_ARGS)):
                with pytest.raises(acgs.ApprovalPending) as caught:
                    guard.call(tool, args, lambda: ran.append("early"))
                r = httpx.post(
                    f"{url}/evolution/requests/{caught.value.request_id}/approve", json={"reason": "ok"}, headers=reviewer("rita")
                )
                assert r.status_code == 200, r.text
                assert guard.resume(caught.value, tool, args, lambda t=tool: ran.append(t) or "ok") == "ok"
            history = [(h["tool"], h["outcome"]) for h in guard.history.snapshot()]
            assert history == [("send_email", "approved"), (EXPORT, "approved")]
            with pytest.raises(acgs.ToolDenied):
                guard.call(EXPORT, {**EXPORT_ARGS, "customer": "c-2"}, lambda: ran.append("second"))
    assert ran == ["send_email", EXPORT]
