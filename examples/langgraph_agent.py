"""A LangGraph agent (LangChain v1 ``create_agent``) whose tool calls go through acgs.Guard.

A scripted chat model stands in for a real one (no network, no API key): it asks for two
tool calls, then answers. Swap in any chat model, e.g. ``init_chat_model("openai:gpt-4.1")``.
The allowed call runs; the denied one reaches the model as a tool error with the reasons.
"""

from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

import acgs
from acgs.adapters.langchain import GuardMiddleware


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedModel":
        return self  # its turns are scripted: nothing to bind


model = ScriptedModel(messages=iter([
    AIMessage("", tool_calls=[{"name": "read_file", "args": {"path": "/workspace/notes.txt"}, "id": "c1"}]),
    AIMessage("", tool_calls=[{"name": "read_file", "args": {"path": "/workspace/.env"}, "id": "c2"}]),
    AIMessage("Here is the summary of notes.txt; I may not read .env."),
]))


@tool
def read_file(path: str) -> str:
    """Reads a file of the workspace."""
    return f"contents of {path}"


guard = acgs.Guard(agent_id="langgraph-agent")
agent = create_agent(model, [read_file], middleware=[GuardMiddleware(guard)])
state = agent.invoke({"messages": [{"role": "user", "content": "Summarise my notes"}]})
for message in state["messages"]:
    if message.type == "tool":
        print(f"{message.status}: {message.content}")
print("agent:", state["messages"][-1].content)
