"""``acgs.adapters.openai_agents`` with the real OpenAI Agents SDK driven by its scripted model
(no network, tracing off), on the real constitution bundle, with audit into a real ``AuditLog``:
an allowed call runs, a denied one reaches the model through the input guardrail's
``reject_content`` with the reasons and the run goes on, one that needs approval stops the run
(``needs_approval``) and runs once approved through ``RunState``, and the session rule denies an
outbound call after a secret."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, Runner, function_tool, set_tracing_disabled  # noqa: E402
from agents.run_state import RunState  # noqa: E402
from agents.testing import ScriptedModel  # noqa: E402
from agents.testing.model import assistant_message, function_call  # noqa: E402

from acgs.adapters.openai_agents import guard_tools  # noqa: E402
from acgs.audit.log import AuditLog  # noqa: E402
from acgs.guard import Guard  # noqa: E402
from tests import adapters_common as common  # noqa: E402
from tests.adapters_common import TRANSFER, ran, tool_events  # noqa: E402

set_tracing_disabled(True)

read_file = function_tool(common.read_file)
payments_transfer = function_tool(common.transfer, name_override="payments_transfer")
read_secret = function_tool(common.read_secret)
http_get = function_tool(common.http_get)
guard = common.guard_fixture("oa-agent", "oa-1")


def agent_for(guard: Guard, *calls: tuple[str, dict[str, Any]]) -> tuple[Agent[Any], ScriptedModel]:
    model = ScriptedModel([*([function_call(n, a, call_id=f"call-{i}")] for i, (n, a) in enumerate(calls)), [assistant_message("done")]])
    tools = guard_tools(guard, [read_file, payments_transfer, read_secret, http_get], tool_names={"payments_transfer": "payments.transfer"})
    return Agent(name="governed", instructions="", model=model, tools=tools), model


def tool_outputs(result: Any) -> dict[str, str]:
    return {item.raw_item["call_id"]: str(item.output) for item in result.new_items if item.type == "tool_call_output_item"}


def test_allow_deny_and_approval_resumed(guard: Guard, audit_log: AuditLog) -> None:
    agent, model = agent_for(guard, ("read_file", {"path": "/workspace/notes.txt"}), ("read_file", {"path": "/etc/passwd"}), ("payments_transfer", TRANSFER))

    async def run() -> tuple[Any, Any]:
        paused = await Runner.run(agent, "go")
        (item,) = paused.interruptions
        assert item.tool_name == "payments_transfer" and json.loads(item.arguments) == TRANSFER
        assert ran == ["read_file"]
        # The run's state, as it would be kept server-side while a reviewer decides.
        state = await RunState.from_string(agent, paused.to_state().to_string())
        state.approve(item)
        return paused, await Runner.run(agent, state)

    paused, done = asyncio.run(run())
    outputs = tool_outputs(paused)
    assert outputs["call-0"] == "contents of /workspace/notes.txt"
    assert "denied by the constitution" in outputs["call-1"] and "path" in outputs["call-1"]
    # The denial came from the input guardrail (reject_content), not from running the tool.
    verdicts = [r.output.behavior["type"] for r in paused.tool_input_guardrail_results]
    assert verdicts == ["allow", "reject_content"], verdicts
    assert ran == ["read_file", "transfer"]
    assert tool_outputs(done)["call-2"] == "transferred" and done.final_output == "done"
    model.assert_complete()

    events = tool_events(guard, audit_log)
    assert [(e["action"], e["result"]) for e in events] == [
        ("tool.read_file", "allowed"), ("tool.read_file", "denied"), ("tool.payments.transfer", "approved"),
    ]  # fmt: skip
    assert len({e["decision_id"] for e in events}) == 3
    assert events[1]["decision_id"] in outputs["call-1"]
    assert events[2]["metadata"]["approved_by"] == "openai-agents"
    # One decision per tool call: needs_approval decides, the guardrail and the tool reuse it.
    assert guard.engine.evaluations == ["acgs/tools/decision"] * 3


def test_session_rule_denies_outbound_call_after_a_secret(guard: Guard, audit_log: AuditLog) -> None:
    agent, model = agent_for(guard, ("read_secret", {"name": "db_password"}), ("http_get", {"url": "https://api.github.com/"}))
    result = asyncio.run(Runner.run(agent, "go"))
    outputs = tool_outputs(result)
    assert outputs["call-0"] == "s3cr3t"
    assert "denied by the constitution" in outputs["call-1"] and "read_secret" in outputs["call-1"]
    assert ran == ["read_secret"] and result.final_output == "done"
    assert [e["result"] for e in tool_events(guard, audit_log)] == ["allowed", "denied"]
    assert len(guard.engine.evaluations) == 2


def test_approval_rejected_never_runs(guard: Guard, audit_log: AuditLog) -> None:
    agent, model = agent_for(guard, ("payments_transfer", TRANSFER))

    async def run() -> Any:
        paused = await Runner.run(agent, "pay")
        (item,) = paused.interruptions
        state = paused.to_state()
        state.reject(item, rejection_message="a reviewer said no")
        return await Runner.run(agent, state)

    done = asyncio.run(run())
    assert tool_outputs(done)["call-0"] == "a reviewer said no" and done.final_output == "done"
    assert ran == []
    model.assert_complete()
    # The call never reached the guard's run path: nothing decided, nothing audited.
    assert tool_events(guard, audit_log) == [] and guard.history.snapshot() == []


def test_docs_snippet(guard: Guard, audit_log: AuditLog) -> None:
    # docs/agents.md's OpenAI Agents snippet, with the scripted model in place of a real one.
    model = ScriptedModel([[function_call("read_file", {"path": "/workspace/notes.txt"}, call_id="c1")],
                           [function_call("payments_transfer", TRANSFER, call_id="c2")], [assistant_message("done")]])  # fmt: skip

    async def main() -> Any:
        # --- snippet ---
        tools = guard_tools(guard, [read_file, payments_transfer], tool_names={"payments_transfer": "payments.transfer"})
        agent = Agent(name="payments-agent", instructions="Pay invoices.", model=model, tools=tools)
        result = await Runner.run(agent, "Pay the invoice in notes.txt")
        while result.interruptions:  # calls the constitution wants approved: the run stops
            state = result.to_state()  # state.to_string() keeps it while a person decides
            for item in result.interruptions:
                print(item.tool_name, item.arguments)
                state.approve(item)  # or state.reject(item, rejection_message="...")
            result = await Runner.run(agent, state)
        print(result.final_output)
        # --- end ---
        return result

    assert asyncio.run(main()).final_output == "done" and ran == ["read_file", "transfer"]
    assert [e["result"] for e in tool_events(guard, audit_log)] == ["allowed", "approved"]


def test_arguments_that_are_no_json_object_are_refused(guard: Guard, audit_log: AuditLog) -> None:
    # The SDK holds arguments it cannot read for approval; approved anyway, the guard refuses them.
    agent, model = agent_for(guard, ("read_file", '["/workspace/notes.txt"]'), ("read_file", "{not json"))  # type: ignore[arg-type]

    async def run() -> Any:
        result = await Runner.run(agent, "go")
        while result.interruptions:
            assert ran == []
            state = result.to_state()
            for item in result.interruptions:
                state.approve(item)
            result = await Runner.run(agent, state)
        return result

    result = asyncio.run(run())
    outputs = tool_outputs(result)
    assert ran == [] and result.final_output == "done", outputs
    assert len(outputs) == 2 and all("refused" in o or "error" in o.lower() for o in outputs.values()), outputs
