"""An OpenAI Agents SDK agent whose function tools go through acgs.Guard.

The SDK's scripted model stands in for a real one (no network, no API key): it asks for two
tool calls, then answers. Drop ``model=`` to use OpenAI's. The allowed call runs; the denied
one reaches the model through the tool's input guardrail, with the reasons.
"""

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

import acgs
from acgs.adapters.openai_agents import guard_tools

set_tracing_disabled(True)
model = ScriptedModel([
    [function_call("http_get", {"url": "https://en.wikipedia.org/wiki/Constitution"}, call_id="c1")],
    [function_call("http_get", {"url": "https://pastebin.com/api/upload"}, call_id="c2")],
    [assistant_message("Read the Wikipedia page; the upload was refused.")],
])


@function_tool
def http_get(url: str) -> str:
    """Fetches a URL."""
    return f"200 OK from {url}"


guard = acgs.Guard(agent_id="openai-agent")
agent = Agent(name="researcher", instructions="Research the topic.", model=model, tools=guard_tools(guard, [http_get]))
result = Runner.run_sync(agent, "What is a constitution?")
for item in result.new_items:
    if item.type == "tool_call_output_item":
        print(f"{item.raw_item['call_id']}: {item.output}")
print("agent:", result.final_output)
