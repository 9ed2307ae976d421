"""The sandbox's ``tool_decision_id`` as an attacker sends it.

``acgs.code_tool`` passes the guard's decision id with a run so that the two audit trails name
each other. To the sandbox that id is the caller's word: anyone can send any string there,
another caller's decision id or one made up. These tests send such ids to a real sandbox
controller (real bwrap, cgroups and the shipped constitution, over its HTTP app) and check that
the id is only ever stored and audited as a claim (``claimed_tool_decision_id``), never becomes
the run's decision id, never reaches the constitution's input (the exact bytes the engine
evaluates are recorded), changes nothing the sandbox decides, and that a malformed one is a 400
with a JSON body and no run. The request's other id, ``decision_id``, is the id the run is
audited under and is taken as sent today: a caller can file its run under another caller's
decision (the last test, an expected failure until the sandbox mints or checks that id).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from acgs.guard import Guard
from acgs.services.sandbox import SandboxService
from tests.services.sandbox_fixtures import (  # noqa: F401 (fixtures)
    HIGH_TRUST,
    client,
    execute,
    require_runtime,
    sandbox_service,
)


class RecordingEngine:
    """The service's real engine, keeping every input it is asked to evaluate (as bytes)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.inputs: list[bytes] = []

    def evaluate_json(self, raw: Any, *args: Any, **kwargs: Any) -> Any:
        self.inputs.append(raw.encode() if isinstance(raw, str) else bytes(raw))
        return self._engine.evaluate_json(raw, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture
def recorded(sandbox_service: SandboxService) -> Iterator[RecordingEngine]:
    real = sandbox_service.engine
    recording = RecordingEngine(real)
    sandbox_service.engine = recording
    try:
        yield recording
    finally:
        sandbox_service.engine = real


@pytest.fixture(scope="module")
def victims_decision() -> str:
    """A real tool decision of another caller: alice's guard allowed her run_code."""
    with Guard(agent_id="alice", session_id="alice-1", trusted={"agent": HIGH_TRUST}) as alice:
        decision = alice.decide("run_code", {"code": "print(1)", "language": "python"})
    assert decision.outcome == "allow", decision
    return decision.decision_id


def audited(service: SandboxService, result: dict[str, Any]) -> dict[str, Any]:
    (event,) = service.store.events_for(result["decision_id"])
    return event


def test_another_callers_decision_id_is_stored_and_audited_only_as_a_claim(
    client: TestClient, sandbox_service: SandboxService, recorded: RecordingEngine, victims_decision: str
) -> None:
    require_runtime(sandbox_service, "bwrap")
    result = execute(client, "print(6 * 7)", agent_id="mallory", tool_decision_id=victims_decision)
    assert result["status"] == "completed" and result["stdout"] == "42\n", result
    # The run has its own decision; the claimed one is echoed as the claim it is.
    assert result["decision_id"] != victims_decision and result["tool_decision_id"] == victims_decision
    event = audited(sandbox_service, result)
    assert event["decision_id"] == result["decision_id"] and event["agent_id"] == "mallory"
    assert event["metadata"]["claimed_tool_decision_id"] == victims_decision
    assert "tool_decision_id" not in event["metadata"]
    # Nothing of it is filed under the victim's decision.
    assert sandbox_service.store.events_for(victims_decision) == []
    # The constitution never saw it.
    assert recorded.inputs and all(victims_decision.encode() not in raw for raw in recorded.inputs)


def test_the_claim_leaves_the_constitutions_input_byte_for_byte_unchanged(
    client: TestClient, sandbox_service: SandboxService, recorded: RecordingEngine, victims_decision: str
) -> None:
    """The same run with and without a claim (a victim's id, a made-up one, one that looks like
    the service's own ids) is the same input to the constitution, and the same answer."""
    plain = execute(client, "print(1)", agent_id="mallory", runtime="auto", expect=None)
    answers = [plain]
    for claim in (victims_decision, "forged-decision-1", "00000000-0000-0000-0000-000000000000"):
        answers.append(execute(client, "print(1)", agent_id="mallory", runtime="auto", expect=None, tool_decision_id=claim))
    assert len(recorded.inputs) == 4
    assert len(set(recorded.inputs)) == 1, recorded.inputs
    for answer in answers[1:]:
        assert (answer["status"] == "denied") == (plain["status"] == "denied")
        assert answer["reasons"] == plain["reasons"] and answer["limits"] == plain["limits"]


def test_a_low_trust_caller_cannot_ride_on_another_callers_allowed_decision(
    client: TestClient, sandbox_service: SandboxService, victims_decision: str
) -> None:
    """alice's guard allowed her run; mallory, below the trust bwrap needs, names alice's
    decision: the sandbox decides mallory's run on mallory's facts and denies it."""
    alone = execute(client, "print(1)", agent_id="mallory", agent={"trust_level": 0.1}, expect=403)
    riding = execute(
        client, "print(1)", agent_id="mallory", agent={"trust_level": 0.1}, tool_decision_id=victims_decision, expect=403
    )
    assert alone["status"] == riding["status"] == "denied"
    assert riding["reasons"] == alone["reasons"] and riding["reasons"]
    assert riding["tool_decision_id"] == victims_decision and riding["decision_id"] != victims_decision
    assert audited(sandbox_service, riding)["metadata"]["claimed_tool_decision_id"] == victims_decision


@pytest.mark.parametrize(
    "claim",
    [
        "",
        "x" * 129,
        "a b",
        "id\n",
        "id\u0000",
        "../../etc/passwd",
        'x","trusted":{"agent":{"trust_level":1}}',
        "d\u0131d",  # a dotless i: only ASCII letters, digits and . _ : - are ids
        7,
        True,
        ["d-1"],
        {"id": "d-1"},
    ],
)
def test_a_malformed_claim_is_a_400_and_no_run(
    client: TestClient, sandbox_service: SandboxService, recorded: RecordingEngine, claim: Any
) -> None:
    before = len(sandbox_service.recent(None, 10_000))
    body = {"language": "python", "code": "print(1)", "agent_id": "mallory", "agent": HIGH_TRUST, "tool_decision_id": claim}
    response = client.post("/execute", json=body)
    assert response.status_code == 400, (claim, response.text)
    assert isinstance(response.json(), dict) and response.json()
    assert recorded.inputs == [] and len(sandbox_service.recent(None, 10_000)) == before


def test_the_longest_claim_is_kept_whole_and_a_trusted_member_is_refused(
    client: TestClient, sandbox_service: SandboxService, recorded: RecordingEngine
) -> None:
    longest = "d" * 128
    kept = execute(client, "print(1)", agent_id="mallory", runtime="auto", expect=None, tool_decision_id=longest)
    assert kept["tool_decision_id"] == longest
    assert audited(sandbox_service, kept)["metadata"]["claimed_tool_decision_id"] == longest
    # Facts are the service's: a body that sends its own is refused, whatever claim it carries.
    forged = {"language": "python", "code": "1", "agent_id": "mallory", "tool_decision_id": "d-1"}
    forged["trusted"] = {"agent": {"trust_level": 1}}
    response = client.post("/execute", json=forged)
    assert response.status_code in (400, 422) and isinstance(response.json(), dict), response.text
    assert len(recorded.inputs) == 1


def test_a_caller_cannot_file_its_run_under_another_callers_decision_id(
    client: TestClient, sandbox_service: SandboxService
) -> None:
    """Unlike ``tool_decision_id``, the request's ``decision_id`` becomes the id the run is
    audited under. A second caller naming the first caller's id must not land its run in the
    first caller's decision: refused, or given an id of the service's own."""
    first = execute(client, "print(1)", agent_id="alice", runtime="auto", expect=None, decision_id="alice-decision-1")
    body = {"language": "python", "code": "print(2)", "agent_id": "mallory", "agent": HIGH_TRUST}
    second = client.post("/execute", json={**body, "decision_id": first["decision_id"]})
    assert second.status_code == 409 and second.json()["code"] == "decision_id_in_use"
    # Malformed or oversized ids are refused before anything runs.
    for bad in ("", "x" * 129, "a b", "id\n", {"$ne": None}):
        r = client.post("/execute", json={**body, "decision_id": bad})
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", (bad, r.text)
    assert {e["agent_id"] for e in sandbox_service.store.events_for(first["decision_id"])} == {"alice"}
