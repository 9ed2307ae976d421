"""ACGS for PydanticAI: ``Agent(..., capabilities=[GuardCapability(guard)])`` decides every tool
call of the agent (its own tools and any toolset's, MCP included) by the tool's name and the
model's arguments.

A denial is ``ToolFailed`` with the reasons: a failed tool result the model reads, without
using the tool's retry budget; the run goes on. ``require_approval`` (when the guard has no
approver of its own) is PydanticAI's deferred approval: the run ends with
``DeferredToolRequests`` (give the agent ``output_type=[..., DeferredToolRequests]``) whose
``metadata`` holds the decision; resume with ``deferred_tool_results=DeferredToolResults(
approvals={tool_call_id: True})`` and the call runs as approved (``ToolDenied(message)`` refuses
it without running).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.capabilities.abstract import WrapToolExecuteHandler
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import ToolDefinition

from acgs.adapters._calls import REFUSALS, approval_payload, catalogue_name, refusal_text
from acgs.errors import ToolInputError
from acgs.guard import Guard

__all__ = ["GuardCapability"]

#: Who settled an approved call, in the audit event (``DeferredToolResults`` names no one).
APPROVER = "pydantic-ai"


class GuardCapability(AbstractCapability[Any]):
    """Puts ``guard`` in front of every tool call of an agent. ``tool_names`` maps a tool's name
    as the model sees it to its name in the constitution's catalogue."""

    def __init__(self, guard: Guard, *, tool_names: Mapping[str, str] | None = None) -> None:
        self.guard = guard
        self.tool_names = dict(tool_names or {})

    async def wrap_tool_execute(
        self, ctx: RunContext[Any], *, call: ToolCallPart, tool_def: ToolDefinition, args: Any, handler: WrapToolExecuteHandler
    ) -> Any:
        tool = catalogue_name(self.tool_names, call.tool_name)
        try:
            arguments = call.args_as_dict()
        except Exception as exc:  # noqa: BLE001 - arguments the model garbled: refused
            raise ToolFailed(f"Tool call refused: the arguments are not a JSON object ({exc})") from None
        guard = self.guard
        call_id = call.tool_call_id or None
        settled: dict[str, Any] = {}
        if ctx.tool_call_approved:
            settled = {"approved": True, "approver": APPROVER}  # a person approved it (DeferredToolResults)
        elif guard.approver is None:
            try:
                decision = await guard.adecide(tool, arguments, call_id=call_id)
            except ToolInputError:
                decision = None  # the call below refuses it, recorded and audited
            if decision is not None and decision.outcome == "require_approval":
                # Nothing recorded yet: the resumed run runs the call under this decision (kept
                # by the guard under the call id) or, in another process, decides it again.
                raise ApprovalRequired(metadata={"acgs": approval_payload(decision, arguments, call.tool_call_id)})
        try:
            return await guard.acall(tool, arguments, lambda: handler(args), call_id=call_id, **settled)
        except REFUSALS as exc:
            raise ToolFailed(refusal_text(exc)) from None
