"""ACGS for LangChain v1 agents and LangGraph: ``GuardMiddleware`` decides every tool call
(``create_agent(..., middleware=[GuardMiddleware(guard)])``, or
``ToolNode(tools, wrap_tool_call=mw.wrap_tool_call, awrap_tool_call=mw.awrap_tool_call)``);
``guard_tool(guard, tool)`` guards one tool wherever it runs (any agent, chain or graph).

A denial is an error ``ToolMessage`` carrying the reasons (the run goes on). ``require_approval``
(when the guard has no approver of its own) pauses the graph with ``langgraph.types.interrupt``
and a payload describing the call; resume with ``Command(resume=True)`` (or ``False``,
``{"approved": bool}``, or ``{interrupt_id: ...}``) on the same thread, and the call runs as
approved or is refused as rejected (``{"approved": True, "approver": "alice"}`` names who
answered in the audit event; else it says ``langgraph``). Needs a checkpointer, as any LangGraph
interrupt does. Under the middleware the decision that paused the graph is the one the resumed
call runs under (one decision id from the pause to the audit event) while the session is
unchanged and the process the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.types import Command, interrupt

from acgs.adapters._calls import REFUSALS, approval_payload, catalogue_name, read_approver, read_verdict, refusal_text
from acgs.errors import ToolInputError
from acgs.guard import Guard, ToolDecision

__all__ = ["GuardMiddleware", "guard_tool"]

Result = ToolMessage | Command[Any]


#: Who settled a call, in the audit event, when the resume value names no one.
APPROVER = "langgraph"


def _decide(guard: Guard, tool: str, args: dict[str, Any], call_id: str | None) -> ToolDecision | None:
    """The decision that says whether to pause for approval first (None: no pause to consider,
    because the guard's own approver answers, or the arguments have no JSON form and the call
    refuses them, recorded and audited). Kept by the guard under ``call_id`` for the call."""
    if guard.approver is not None:
        return None
    try:
        return guard.decide(tool, args, call_id=call_id)
    except ToolInputError:
        return None


async def _adecide(guard: Guard, tool: str, args: dict[str, Any], call_id: str | None) -> ToolDecision | None:
    if guard.approver is not None:
        return None
    try:
        return await guard.adecide(tool, args, call_id=call_id)
    except ToolInputError:
        return None


def _settle(decision: ToolDecision | None, args: dict[str, Any], call_id: str | None) -> dict[str, Any]:
    """How the call runs: ``{}`` (as the constitution says), or, when it needs approval and the
    guard has no approver, settled by the answer to ``interrupt`` (``approved``, ``approver``).
    ``decide`` has no side effects, which matters: after a resume LangGraph runs the node again
    from the start, and only ``interrupt`` returns differently."""
    if decision is None or decision.outcome != "require_approval":
        return {}
    answer = interrupt(approval_payload(decision, args, call_id))
    return {"approved": read_verdict(answer), "approver": read_approver(answer, APPROVER)}


class GuardMiddleware(AgentMiddleware[Any, Any]):
    """Tool-call middleware that puts ``guard`` in front of every tool. ``tool_names`` maps a
    tool's name as the model sees it to its name in the constitution's catalogue."""

    def __init__(self, guard: Guard, *, tool_names: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.guard = guard
        self.tool_names = dict(tool_names or {})

    @property
    def name(self) -> str:
        return "ACGSGuard"

    def _call(self, request: Any) -> tuple[str, dict[str, Any] | None, str | None]:
        tool_call = request.tool_call
        args = tool_call.get("args")
        arguments = dict(args) if isinstance(args, Mapping) else None
        return catalogue_name(self.tool_names, tool_call["name"]), arguments, tool_call.get("id") or None

    def _refused(self, exc: BaseException, request: Any, call_id: str | None) -> ToolMessage:
        return ToolMessage(content=refusal_text(exc), tool_call_id=call_id or "", name=request.tool_call["name"], status="error")

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Result]) -> Result:
        tool, args, call_id = self._call(request)
        if args is None:
            return self._refused(ValueError("the arguments are not an object"), request, call_id)
        settled = _settle(_decide(self.guard, tool, args, call_id), args, call_id)
        try:
            result: Result = self.guard.call(tool, args, lambda: handler(request), call_id=call_id, **settled)
        except REFUSALS as exc:
            return self._refused(exc, request, call_id)
        return result

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Result]]) -> Result:
        tool, args, call_id = self._call(request)
        if args is None:
            return self._refused(ValueError("the arguments are not an object"), request, call_id)
        settled = _settle(await _adecide(self.guard, tool, args, call_id), args, call_id)
        try:
            result: Result = await self.guard.acall(tool, args, lambda: handler(request), call_id=call_id, **settled)
        except REFUSALS as exc:
            return self._refused(exc, request, call_id)
        return result


def _call_key(tool: str, args: dict[str, Any]) -> str | None:
    """A tool sees no call id: its calls are kept by tool and arguments instead. Safe, since the
    guard reuses a kept decision only for exactly the same input (then the decision is the
    same), and once."""
    try:
        data = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return f"acgs-tool:{tool}:{hashlib.sha256(data).hexdigest()}"


def guard_tool(guard: Guard, tool: BaseTool, *, name: str | None = None) -> BaseTool:
    """``tool`` behind ``guard``: the same name, description and argument schema; a refusal is a
    ``ToolException`` the tool turns into an error ``ToolMessage`` with the reasons; approval
    interrupts the graph as ``GuardMiddleware`` does. ``name``: the tool's catalogue name, when
    not the tool's own."""
    catalogue = name or tool.name

    def run(**kwargs: Any) -> Any:
        key = _call_key(catalogue, kwargs)
        settled = _settle(_decide(guard, catalogue, kwargs, key), kwargs, None)
        try:
            return guard.call(catalogue, kwargs, lambda: tool.invoke(kwargs), call_id=key, **settled)
        except REFUSALS as exc:
            raise ToolException(refusal_text(exc)) from None

    async def arun(**kwargs: Any) -> Any:
        key = _call_key(catalogue, kwargs)
        settled = _settle(await _adecide(guard, catalogue, kwargs, key), kwargs, None)
        try:
            return await guard.acall(catalogue, kwargs, lambda: tool.ainvoke(kwargs), call_id=key, **settled)
        except REFUSALS as exc:
            raise ToolException(refusal_text(exc)) from None

    return StructuredTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema if tool.args_schema is not None else tool.get_input_schema(),
        func=run,
        coroutine=arun,
        handle_tool_error=True,
        return_direct=tool.return_direct,
    )
