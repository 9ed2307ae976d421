"""``acgs.adapters.pydantic_ai.GuardCapability`` in a real PydanticAI agent driven by a scripted
``FunctionModel`` (model requests to providers off), on the real constitution bundle, with audit
into a real ``AuditLog``: an allowed call runs, a denied one reaches the model as a failed tool
result (``ToolFailed``) with the reasons and the run goes on, one that needs approval ends the run
with ``DeferredToolRequests`` and runs once resumed approved, and the session rule denies an
outbound call after a secret."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, Tool, ToolDenied, models  # noqa: E402
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart, ToolReturnPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402

from acgs.adapters._calls import APPROVAL_TYPE  # noqa: E402
from acgs.adapters.pydantic_ai import GuardCapability  # noqa: E402
from acgs.audit.log import AuditLog  # noqa: E402
from acgs.guard import Guard  # noqa: E402
from tests import adapters_common as common  # noqa: E402
from tests.adapters_common import TRANSFER, TRUSTED, ran, read_file, tool_events, transfer  # noqa: E402

models.ALLOW_MODEL_REQUESTS = False
TOOLS = [Tool(read_file), Tool(transfer, name="payments_transfer"), Tool(common.read_secret), Tool(common.http_get)]
guard = common.guard_fixture("pa-agent", "pa-1")


def scripted(*calls: tuple[str, dict[str, Any]]) -> FunctionModel:
    """One tool call per model turn, then "done"."""
    script = [ModelResponse(parts=[ToolCallPart(n, a, tool_call_id=f"call-{i}")]) for i, (n, a) in enumerate(calls)]
    script.append(ModelResponse(parts=[TextPart("done")]))

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return script.pop(0)

    return FunctionModel(respond)


def agent_for(guard: Guard, *calls: tuple[str, dict[str, Any]]) -> Agent[None, Any]:
    capability = GuardCapability(guard, tool_names={"payments_transfer": "payments.transfer"})
    return Agent(scripted(*calls), tools=TOOLS, output_type=[str, DeferredToolRequests], capabilities=[capability])


def tool_returns(messages: list[ModelMessage]) -> dict[str, Any]:
    return {p.tool_call_id: p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)}


def test_allow_deny_and_approval_resumed(guard: Guard, audit_log: AuditLog) -> None:
    agent = agent_for(guard, ("read_file", {"path": "/workspace/notes.txt"}), ("read_file", {"path": "/etc/passwd"}), ("payments_transfer", TRANSFER))
    paused = agent.run_sync("go")
    requests = paused.output
    assert isinstance(requests, DeferredToolRequests)
    (pending,) = requests.approvals
    payload = requests.metadata[pending.tool_call_id]["acgs"]
    assert payload["type"] == APPROVAL_TYPE and payload["tool"] == "payments.transfer" and payload["approval"]["reviewers"] == 2
    assert ran == ["read_file"]
    returns = tool_returns(paused.all_messages())
    assert returns["call-0"].content == "contents of /workspace/notes.txt"
    denied = returns["call-1"]
    assert denied.outcome == "failed" and "denied by the constitution" in str(denied.content) and "path" in str(denied.content)

    # Resumed later from the stored history, approved.
    history = ModelMessagesTypeAdapter.validate_json(paused.all_messages_json())
    done = agent.run_sync(message_history=history, deferred_tool_results=DeferredToolResults(approvals={pending.tool_call_id: True}))
    assert done.output == "done" and ran == ["read_file", "transfer"]
    assert tool_returns(done.all_messages())["call-2"].content == "transferred"

    events = tool_events(guard, audit_log)
    assert [(e["action"], e["result"]) for e in events] == [
        ("tool.read_file", "allowed"), ("tool.read_file", "denied"), ("tool.payments.transfer", "approved"),
    ]  # fmt: skip
    assert len({e["decision_id"] for e in events}) == 3
    assert events[1]["decision_id"] in str(denied.content)
    # Audited under the decision that deferred the call, with who settled it; one evaluation each.
    assert events[2]["decision_id"] == payload["decision_id"] and events[2]["metadata"]["approved_by"] == "pydantic-ai"
    assert guard.engine.evaluations == ["acgs/tools/decision"] * 3


def test_session_rule_denies_outbound_call_after_a_secret(guard: Guard, audit_log: AuditLog) -> None:
    agent = agent_for(guard, ("read_secret", {"name": "db_password"}), ("http_get", {"url": "https://api.github.com/"}))
    result = agent.run_sync("go")
    returns = tool_returns(result.all_messages())
    assert returns["call-0"].content == "s3cr3t"
    assert returns["call-1"].outcome == "failed" and "read_secret" in str(returns["call-1"].content)
    assert ran == ["read_secret"] and result.output == "done"
    assert [e["result"] for e in tool_events(guard, audit_log)] == ["allowed", "denied"]


def test_approval_denied_never_runs(guard: Guard, audit_log: AuditLog) -> None:
    agent = agent_for(guard, ("payments_transfer", TRANSFER))
    paused = agent.run_sync("pay")
    (pending,) = paused.output.approvals
    refused = ToolDenied("a reviewer said no")
    done = agent.run_sync(message_history=paused.all_messages(), deferred_tool_results=DeferredToolResults(approvals={pending.tool_call_id: refused}))
    assert done.output == "done" and ran == []
    assert "a reviewer said no" in str(tool_returns(done.all_messages())["call-0"].content)
    assert tool_events(guard, audit_log) == []


def test_the_guards_own_approver_answers_in_the_run(audit_log: AuditLog) -> None:
    ran.clear()
    seen: list[str] = []

    def approve(decision: Any) -> bool:
        seen.append(decision.tool)
        return True

    g = Guard(agent_id="pa-agent", session_id="pa-2", audit=audit_log, trusted=TRUSTED, approver=approve)
    try:
        result = agent_for(g, ("payments_transfer", TRANSFER)).run_sync("pay")
        assert result.output == "done" and ran == ["transfer"] and seen == ["payments.transfer"]
        assert [e["result"] for e in tool_events(g, audit_log)] == ["approved"]
    finally:
        g.close()


def test_docs_snippet(guard: Guard, audit_log: AuditLog) -> None:
    # docs/agents.md's PydanticAI snippet, with the scripted model in place of a real one.
    model = scripted(("read_file", {"path": "/workspace/notes.txt"}), ("payments_transfer", TRANSFER))
    # --- snippet ---
    governed = GuardCapability(guard, tool_names={"payments_transfer": "payments.transfer"})
    agent = Agent(model, tools=[read_file, Tool(transfer, name="payments_transfer")],
                  output_type=[str, DeferredToolRequests], capabilities=[governed])  # fmt: skip
    result = agent.run_sync("Pay the invoice in notes.txt")
    while isinstance(result.output, DeferredToolRequests):  # calls the constitution wants approved
        approvals = {}
        for call in result.output.approvals:
            print(call.tool_name, result.output.metadata[call.tool_call_id]["acgs"]["reasons"])
            approvals[call.tool_call_id] = True  # or ToolDenied("why"): the model reads it
        result = agent.run_sync(message_history=result.all_messages(), deferred_tool_results=DeferredToolResults(approvals=approvals))
    print(result.output)
    # --- end ---
    assert result.output == "done" and ran == ["read_file", "transfer"]
    assert [e["result"] for e in tool_events(guard, audit_log)] == ["allowed", "approved"]
