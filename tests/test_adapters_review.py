"""The framework adapters with a guard whose approver is a ``ReviewApprover``: a call above the
transfer threshold waits, inside the framework's tool call, for two reviewers who approve it over
REST in the real evolution service (uvicorn on loopback), then runs; the agent never pauses and
the call is one ``approved`` audit event sharing its decision id with the action request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from acgs.audit.events import EventFilter
from acgs.audit.log import AuditLog
from acgs.guard import Guard, ReviewApprover
from acgs.security import SecuritySettings
from acgs.services.evolution import EvolutionSettings, create_app
from tests.adapters_common import TRANSFER, TRUSTED
from tests.services.conftest import ServerThread

FRAMEWORKS = ["langgraph", "openai_agents", "pydantic_ai"]


@pytest.fixture
def evolution(tmp_path: Path) -> Iterator[str]:
    settings = EvolutionSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0)
    with ServerThread(create_app(settings, security=SecuritySettings(auth=False))) as server:
        yield f"http://127.0.0.1:{server.port}"


def reviewers_approve(base: str) -> threading.Thread:
    """Two reviewers, over REST: wait for the pending action request, then approve it."""

    def review() -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            headers = {"X-ACGS-Role": "reviewer"}
            while not (page := http.get("/evolution/requests", params={"status": "pending"}, headers={**headers, "X-ACGS-Identity": "w"}).json())["items"]:
                pass
            request_id = page["items"][0]["request_id"]
            for who in ("alice", "bob"):
                r = http.post(f"/evolution/requests/{request_id}/approve", json={"reason": "ok"}, headers={**headers, "X-ACGS-Identity": who})
                assert r.status_code == 200, r.text

    thread = threading.Thread(target=review, daemon=True)
    thread.start()
    return thread


def run_agent(framework: str, guard: Guard, ran: list[str]) -> str:
    """One transfer through the framework's agent, driven by its scripted model; the final text."""
    if framework == "langgraph":
        pytest.importorskip("langchain")
        from langchain.agents import create_agent
        from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
        from langchain_core.messages import AIMessage
        from langchain_core.tools import tool

        from acgs.adapters.langchain import GuardMiddleware

        class Model(GenericFakeChatModel):
            def bind_tools(self, tools: Any, **kwargs: Any) -> Model:
                return self

        @tool("payments.transfer")
        def transfer(amount: int, currency: str, to_account: str) -> str:
            """Transfers money."""
            ran.append("transfer")
            return "transferred"

        call = AIMessage(content="", tool_calls=[{"name": "payments.transfer", "args": TRANSFER, "id": "c1"}])
        agent = create_agent(Model(messages=iter([call, AIMessage(content="done")])), [transfer], middleware=[GuardMiddleware(guard)])
        return str(agent.invoke({"messages": [{"role": "user", "content": "pay"}]})["messages"][-1].content)
    if framework == "openai_agents":
        pytest.importorskip("agents")
        from agents import Agent, Runner, function_tool, set_tracing_disabled
        from agents.testing import ScriptedModel
        from agents.testing.model import assistant_message, function_call

        from acgs.adapters.openai_agents import guard_tools

        set_tracing_disabled(True)

        @function_tool
        def payments_transfer(amount: int, currency: str, to_account: str) -> str:
            """Transfers money."""
            ran.append("transfer")
            return "transferred"

        model = ScriptedModel([[function_call("payments_transfer", TRANSFER, call_id="c1")], [assistant_message("done")]])
        tools = guard_tools(guard, [payments_transfer], tool_names={"payments_transfer": "payments.transfer"})
        result = asyncio.run(Runner.run(Agent(name="payer", model=model, tools=tools), "pay"))
        assert not result.interruptions
        return str(result.final_output)
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent as PydanticAgent
    from pydantic_ai import Tool
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import FunctionModel

    from acgs.adapters.pydantic_ai import GuardCapability

    def pay(amount: int, currency: str, to_account: str) -> str:
        ran.append("transfer")
        return "transferred"

    script = [ModelResponse(parts=[ToolCallPart("payments.transfer", TRANSFER, tool_call_id="c1")]), ModelResponse(parts=[TextPart("done")])]
    fn_model = FunctionModel(lambda messages, info: script.pop(0))
    agent = PydanticAgent(fn_model, tools=[Tool(pay, name="payments.transfer")], capabilities=[GuardCapability(guard)])
    return str(agent.run_sync("pay").output)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_agent_waits_while_reviewers_approve_over_rest(framework: str, evolution: str, audit_log: AuditLog) -> None:
    ran: list[str] = []
    approver = ReviewApprover(evolution, timeout=30, poll=0.02)
    with Guard(agent_id="agent-7", session_id=f"s-{framework}", approver=approver, audit=audit_log, trusted=TRUSTED) as guard:
        thread = reviewers_approve(evolution)
        assert run_agent(framework, guard, ran) == "done"
        thread.join(10)
        assert ran == ["transfer"] and guard.flush()
    (event,) = [s.event() for s in asyncio.run(audit_log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=10))]
    assert event["result"] == "approved" and event["action"] == "tool.payments.transfer"
    with httpx.Client(base_url=evolution) as http:
        (record,) = http.get("/evolution/requests", headers={"X-ACGS-Identity": "auditor", "X-ACGS-Role": "reviewer"}).json()["items"]
    assert record["kind"] == "action" and record["decision_id"] == event["decision_id"] and record["status"] == "deployed"
