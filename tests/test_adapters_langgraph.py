"""``acgs.adapters.langchain.GuardMiddleware`` in a real LangChain v1 agent (LangGraph underneath)
driven by a scripted fake chat model, on the real constitution bundle, with audit into a real
``AuditLog``: an allowed call runs, a denied one reaches the model as an error ToolMessage with
the reasons and the run goes on, one that needs approval pauses the graph (``interrupt``) and
runs once resumed approved, and the session rule denies an outbound call after a secret."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("langchain")
pytest.importorskip("langgraph")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode  # noqa: E402
from langgraph.types import Command  # noqa: E402

from acgs.adapters._calls import APPROVAL_TYPE  # noqa: E402
from acgs.adapters.langchain import GuardMiddleware, guard_tool  # noqa: E402
from acgs.audit.log import AuditLog  # noqa: E402
from acgs.guard import Guard  # noqa: E402
from tests import adapters_common as common  # noqa: E402
from tests.adapters_common import THREE_CALLS, TRANSFER, ran, tool_events  # noqa: E402


class ScriptedModel(GenericFakeChatModel):
    """The fake chat model, able to take tools (it ignores them: its turns are scripted)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


def turns(*calls: tuple[str, dict[str, Any]]) -> ScriptedModel:
    script = [AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": f"call-{i}"}]) for i, (n, a) in enumerate(calls)]
    return ScriptedModel(messages=iter([*script, AIMessage(content="done")]))


read_file = tool(common.read_file)
transfer = tool("payments.transfer")(common.transfer)
TOOLS = [read_file, transfer, tool(common.read_secret), tool(common.http_get)]
guard = common.guard_fixture("lg-agent", "lg-1")


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def governed_agent(how: str, guard: Guard, *calls: tuple[str, dict[str, Any]]) -> Any:
    if how == "middleware":
        return create_agent(turns(*calls), TOOLS, middleware=[GuardMiddleware(guard)], checkpointer=InMemorySaver())
    return create_agent(turns(*calls), [guard_tool(guard, t) for t in TOOLS], checkpointer=InMemorySaver())


@pytest.mark.parametrize("how", ["middleware", "tool wrapper"])
def test_allow_deny_and_approval_resumed(how: str, guard: Guard, audit_log: AuditLog) -> None:
    agent = governed_agent(how, guard, *THREE_CALLS)
    config = {"configurable": {"thread_id": "t-1"}}
    paused = agent.invoke({"messages": [{"role": "user", "content": "go"}]}, config)

    # The transfer above 100 paused the graph; nothing of it ran, the first two calls are answered.
    (pending,) = paused["__interrupt__"]
    payload = pending.value
    assert payload["type"] == APPROVAL_TYPE and payload["tool"] == "payments.transfer" and "arguments" not in payload  # redacted by the catalogue
    assert payload["tool_call_id"] == ("call-2" if how == "middleware" else None)
    assert payload["approval"]["reviewers"] == 2 and payload["decision_id"]
    assert ran == ["read_file"]
    allowed, denied = tool_messages(paused)
    assert allowed.status == "success" and allowed.content == "contents of /workspace/notes.txt"
    assert denied.status == "error" and "denied by the constitution" in denied.content and "path" in denied.content

    done = agent.invoke(Command(resume={pending.id: {"approved": True, "approver": "alice"}}), config)
    assert ran == ["read_file", "transfer"]
    assert tool_messages(done)[-1].content == "transferred" and done["messages"][-1].content == "done"

    events = tool_events(guard, audit_log)
    assert [(e["action"], e["result"]) for e in events] == [
        ("tool.read_file", "allowed"), ("tool.read_file", "denied"), ("tool.payments.transfer", "approved"),
    ]  # fmt: skip
    assert len({e["decision_id"] for e in events}) == 3
    assert events[1]["decision_id"] in denied.content
    # The approved call is audited under the decision that paused the graph, with who settled it;
    # one evaluation per call, the pause and the resumed run included.
    assert events[2]["decision_id"] == payload["decision_id"]
    assert events[2]["metadata"]["approved_by"] == "alice"
    assert guard.engine.evaluations == ["acgs/tools/decision"] * 3
    assert [h["outcome"] for h in guard.history.snapshot()] == ["allow", "deny", "approved"]
    assert asyncio.run(audit_log.verify()).ok


@pytest.mark.parametrize(("how", "answer"), [("middleware", False), ("tool wrapper", False), ("middleware", "yes please"), ("middleware", {"approved": "true"})])
def test_approval_rejected_reaches_the_model_as_an_error(how: str, answer: Any, guard: Guard, audit_log: AuditLog) -> None:
    # Only True, "approve" or {"approved": True} approve: any other answer is a rejection.
    agent = governed_agent(how, guard, ("payments.transfer", TRANSFER))
    config = {"configurable": {"thread_id": "t-2"}}
    paused = agent.invoke({"messages": [{"role": "user", "content": "pay"}]}, config)
    done = agent.invoke(Command(resume=answer), config)
    (rejected,) = tool_messages(done)
    assert rejected.status == "error" and "rejected by a reviewer" in rejected.content
    assert ran == []
    (event,) = tool_events(guard, audit_log)
    assert event["result"] == "rejected" and event["metadata"]["rejected_by"] == "langgraph"
    assert event["decision_id"] == paused["__interrupt__"][0].value["decision_id"]


def test_session_rule_denies_outbound_call_after_a_secret(guard: Guard, audit_log: AuditLog) -> None:
    # ToolNode directly (LangGraph without the LangChain agent), async path.
    mw = GuardMiddleware(guard)
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode(TOOLS, wrap_tool_call=mw.wrap_tool_call, awrap_tool_call=mw.awrap_tool_call))
    graph.add_edge(START, "tools")
    node = graph.compile()
    secret = AIMessage(content="", tool_calls=[{"name": "read_secret", "args": {"name": "db_password"}, "id": "c1"}])
    out = AIMessage(content="", tool_calls=[{"name": "http_get", "args": {"url": "https://api.github.com/"}, "id": "c2"}])
    first = asyncio.run(node.ainvoke({"messages": [secret]}))
    second = asyncio.run(node.ainvoke({"messages": [*first["messages"], out]}))
    message = second["messages"][-1]
    assert message.status == "error" and "read_secret" in message.content
    assert ran == ["read_secret"]
    assert [e["result"] for e in tool_events(guard, audit_log)] == ["allowed", "denied"]


def test_importing_acgs_and_its_adapters_package_needs_no_framework() -> None:
    code = "import sys, acgs, acgs.adapters; assert not {'langchain', 'langgraph', 'agents', 'pydantic_ai'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_snippet(guard: Guard, audit_log: AuditLog) -> None:
    # docs/agents.md's LangGraph snippet, with the scripted model in place of a real one.
    model = turns(("read_file", {"path": "/workspace/notes.txt"}), ("payments.transfer", TRANSFER))
    # --- snippet ---
    agent = create_agent(model, [read_file, transfer], middleware=[GuardMiddleware(guard)], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-1"}}
    state = agent.invoke({"messages": [{"role": "user", "content": "Pay the invoice in notes.txt"}]}, config)
    while state.get("__interrupt__"):  # calls the constitution wants approved: the graph waits
        answers = {}
        for pending in state["__interrupt__"]:
            print(pending.value["tool"], pending.value["reasons"], pending.value["approval"])
            answers[pending.id] = {"approved": True}  # or False: the model reads a rejection
        state = agent.invoke(Command(resume=answers), config)
    print(state["messages"][-1].content)
    # --- end ---
    assert ran == ["read_file", "transfer"] and state["messages"][-1].content == "done"
    assert [e["result"] for e in tool_events(guard, audit_log)] == ["allowed", "approved"]
