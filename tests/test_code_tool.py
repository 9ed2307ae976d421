"""``acgs.code_tool``: the catalogue's ``run_code`` as a guarded tool that runs code in a real
sandbox controller (real bwrap, cgroups and constitution; in process and over HTTP on loopback),
with the guard's audit in a real ``AuditLog`` and the sandbox's in its own outbox: allowed code
runs and returns its output, code the constitution denies never reaches the sandbox, both trails
carry the link; and the guard's fail-closed answer to a decision that requires the sandbox for a
tool that does not run there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import acgs
from acgs.audit.events import EventFilter
from acgs.audit.log import AuditLog
from acgs.guard import SANDBOX_REQUIRED, Guard
from acgs.services.sandbox import SandboxService, create_app
from tests.services.conftest import ServerThread
from tests.services.sandbox_fixtures import (  # noqa: F401 (fixtures)
    HIGH_TRUST,
    client,
    execute,
    require_runtime,
    sandbox_service,
)

TRUSTED = {"agent": HIGH_TRUST}


@pytest.fixture
def guard(audit_log: AuditLog) -> Iterator[Guard]:
    g = Guard(agent_id="coder", session_id="code-1", audit=audit_log, trusted=TRUSTED)
    yield g
    g.close()


def tool_events(g: Guard, log: AuditLog) -> list[dict[str, Any]]:
    assert g.flush()
    return [s.event() for s in asyncio.run(log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=100))]


def assert_linked(guard_event: dict[str, Any], result: Any, service: SandboxService) -> None:
    """Each trail names the other: the guard's event the execution and the sandbox's decision,
    the sandbox's event the guard's decision (as the caller's claim)."""
    link = guard_event["metadata"]["sandbox"]
    assert link == {k: result[k] for k in ("execution_id", "decision_id", "status", "exit_code")}
    assert result["decision_id"] != guard_event["decision_id"] and result["tool_decision_id"] == guard_event["decision_id"]
    (sandbox_event,) = service.store.events_for(result["decision_id"])
    assert sandbox_event["metadata"]["execution_id"] == result["execution_id"]
    assert sandbox_event["metadata"]["claimed_tool_decision_id"] == guard_event["decision_id"]
    assert sandbox_event["result"] == result["status"]


def test_allowed_code_runs_in_the_sandbox_in_process(guard: Guard, audit_log: AuditLog, sandbox_service: SandboxService) -> None:
    require_runtime(sandbox_service, "bwrap")
    run_code = acgs.code_tool(guard, sandbox_service, runtime="bwrap")
    result = run_code("import sys\nprint('hello', sys.stdin.read())", stdin="sandbox")
    assert result["status"] == "completed" and result["exit_code"] == 0 and result["stdout"] == "hello sandbox\n", result
    (event,) = tool_events(guard, audit_log)
    assert event["action"] == "tool.run_code" and event["result"] == "allowed"
    assert event["metadata"]["arguments"]["code"].startswith("import sys")
    assert_linked(event, result, sandbox_service)


def test_denied_code_never_reaches_the_sandbox(guard: Guard, audit_log: AuditLog, sandbox_service: SandboxService) -> None:
    run_code = acgs.code_tool(guard, sandbox_service)
    before = len(sandbox_service.recent(None, 1000))
    with pytest.raises(acgs.ToolDenied) as denied:
        run_code("puts 1", language="ruby")  # the catalogue's language enum
    assert "argument language ruby" in str(denied.value)
    with pytest.raises(acgs.ToolDenied):
        run_code(None)  # type: ignore[arg-type]  # code must be a string
    assert len(sandbox_service.recent(None, 1000)) == before
    events = tool_events(guard, audit_log)
    assert [e["result"] for e in events] == ["denied", "denied"] and all("sandbox" not in e["metadata"] for e in events)


def test_over_http_async_and_the_sandboxs_own_admission(guard: Guard, audit_log: AuditLog, sandbox_service: SandboxService) -> None:
    require_runtime(sandbox_service, "bwrap")
    with ServerThread(create_app(sandbox_service.settings, service=sandbox_service)) as server:
        url = f"http://127.0.0.1:{server.port}"
        run_code = acgs.code_tool(guard, url, runtime="bwrap", asynchronous=True)
        ran = asyncio.run(run_code("echo $((6 * 7))", language="bash"))
        # The guard allows it; the sandbox's own constitution denies a low-trust agent on bwrap.
        low = acgs.code_tool(guard, url, runtime="bwrap", agent={"trust_level": 0.1}, asynchronous=True)
        refused = asyncio.run(low("print(1)"))
    assert ran["status"] == "completed" and ran["stdout"] == "42\n", ran
    assert refused["status"] == "denied" and refused["reasons"] and refused["exit_code"] is None, refused
    first, second = tool_events(guard, audit_log)
    assert first["result"] == second["result"] == "allowed"
    assert_linked(first, ran, sandbox_service)
    assert_linked(second, refused, sandbox_service)


def test_the_claimed_link_changes_nothing_the_sandbox_decides(client: TestClient, sandbox_service: SandboxService) -> None:
    require_runtime(sandbox_service, "bwrap")
    plain = execute(client, "print(1)")
    linked = execute(client, "print(1)", tool_decision_id="guard-decision-1")
    assert plain["reasons"] == linked["reasons"] and plain["limits"] == linked["limits"]
    assert linked["tool_decision_id"] == "guard-decision-1" and linked["decision_id"] != "guard-decision-1"
    assert plain["tool_decision_id"] is None
    for bad in ("", "x" * 129, "a b", "id\n", 7):
        response = client.post("/execute", json={"language": "python", "code": "1", "agent_id": "a", "tool_decision_id": bad})
        assert response.status_code == 400, (bad, response.text)


def test_a_tool_that_does_not_run_in_the_sandbox_is_denied_when_the_decision_requires_it(audit_log: AuditLog) -> None:
    ran: list[str] = []
    with Guard(agent_id="coder", session_id="code-2", audit=audit_log, trusted=TRUSTED, approver=lambda d: True) as g:

        @g.tool(name="run_code")
        def run_here(code: str, language: str = "python") -> str:
            ran.append(code)
            return "ran on the host"

        with pytest.raises(acgs.ToolDenied) as denied:
            run_here("print(1)")
        assert SANDBOX_REQUIRED in denied.value.reasons and denied.value.outcome == "deny"
        with pytest.raises(acgs.ToolDenied):
            g.call("run_code", {"code": "print(1)", "language": "python"}, lambda: ran.append("by name"), approved=True)
        # Marked as running in the sandbox, the same decision lets it run.
        assert g.call("run_code", {"code": "print(1)", "language": "python"}, lambda: "sandboxed", sandboxed=True) == "sandboxed"
        # A tool whose decision has no such condition runs unmarked, as before.
        assert g.call("read_file", {"path": "/workspace/a"}, lambda: "read") == "read"
    assert ran == []
    events = tool_events(g, audit_log)
    assert [e["result"] for e in events] == ["denied", "denied", "allowed", "allowed"]
    assert SANDBOX_REQUIRED in events[0]["metadata"]["reasons"] and events[0]["metadata"]["outcome"] == "deny"
    assert [h["outcome"] for h in g.history.snapshot()] == ["deny", "deny", "allow", "allow"]


def test_an_unreachable_sandbox_is_an_error_not_a_result(guard: Guard, audit_log: AuditLog) -> None:
    from tests.services.conftest import free_port

    run_code = acgs.code_tool(guard, f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(acgs.SandboxError) as failed:
        run_code("print(1)")
    assert "unreachable" in str(failed.value)
    (event,) = tool_events(guard, audit_log)
    assert event["result"] == "failed" and "SandboxError" in event["metadata"]["error"] and "sandbox" not in event["metadata"]
