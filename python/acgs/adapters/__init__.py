"""Framework adapters: ``acgs.Guard`` in the tool-call path of agent frameworks, one module per
framework, each importing its library only when imported itself (``pip install acgs[langgraph]``,
``acgs[openai-agents]``, ``acgs[pydantic-ai]``):

- ``acgs.adapters.langchain``: LangChain v1 agents and LangGraph ``ToolNode``.
- ``acgs.adapters.openai_agents``: OpenAI Agents SDK function tools.
- ``acgs.adapters.pydantic_ai``: PydanticAI agents.

Each one decides every tool call by its name and the model's arguments (``Guard.call``), audits it
once, hands a denial back to the model as a tool error carrying the reasons (the run goes on),
and turns ``require_approval`` into the framework's own pause and resume.
"""
