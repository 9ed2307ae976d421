"""ACGS for the OpenAI Agents SDK: ``guard_tools(guard, [tool, ...])`` (or ``guard_tool``) gives
back function tools whose every call the constitution decides.

- A denial reaches the model through the tool's input guardrail (``reject_content``) with the
  reasons; the run goes on.
- ``require_approval`` (when the guard has no approver of its own) is the tool's
  ``needs_approval``: the run stops with ``result.interruptions``; ``state.approve(item)`` or
  ``state.reject(item)`` and ``Runner.run(agent, state)`` resume it, and an approved call runs.
- One decision per call: ``needs_approval`` decides it (``Guard.adecide(..., call_id=)``), and
  the guardrail and the call itself (``Guard.acall(..., call_id=)``) reuse that decision and its
  id while the session is unchanged; a call whose session moved on in between (another call of
  the same turn ran first) is decided afresh. Recorded in the session and audited once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from agents import FunctionTool, RunContextWrapper, ToolGuardrailFunctionOutput, ToolInputGuardrailData
from agents.tool_context import ToolContext
from agents.tool_guardrails import ToolInputGuardrail

from acgs.adapters._calls import REFUSALS, catalogue_name, refusal_text
from acgs.errors import ToolInputError
from acgs.guard import Guard

__all__ = ["guard_tool", "guard_tools"]

#: Who settled an approved call, in the audit event (the SDK's ``RunState.approve`` names no one).
APPROVER = "openai-agents"


class _Unreadable(ValueError):
    pass


def _arguments(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The model's arguments; ``_Unreadable`` when they are not a JSON object (refused)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        raise _Unreadable(f"the arguments are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _Unreadable("the arguments are not a JSON object")
    return value


async def _not_run() -> Any:
    # Reached only if the decision turned from deny to allow between two evaluations: refuse.
    raise RuntimeError("the decision changed while the call was being refused; not run")


class _Guarded:
    """One tool's guard: its approval check, input guardrail and invoker."""

    def __init__(self, guard: Guard, tool: FunctionTool, catalogue: str) -> None:
        self.guard = guard
        self.tool = tool
        self.catalogue = catalogue
        self.invoke_tool = tool.on_invoke_tool
        self.needs_approval_before = tool.needs_approval

    async def needs_approval(self, ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        before = self.needs_approval_before
        if before is True or (callable(before) and await before(ctx, params, call_id)):
            return True
        try:
            # Kept by the guard under the call id: the guardrail and the call run under it.
            decision = await self.guard.adecide(self.catalogue, params, call_id=call_id)
        except ToolInputError:
            return False  # refused by the guardrail and the invoker, audited there
        return decision.outcome == "require_approval" and self.guard.approver is None

    async def check_input(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        call_id = data.context.tool_call_id or None
        try:
            args = _arguments(data.context.tool_arguments)
            decision = await self.guard.adecide(self.catalogue, args, call_id=call_id)
            if decision.outcome != "deny":
                return ToolGuardrailFunctionOutput.allow()
            # Records and audits the denial, under the decision just read.
            await self.guard.acall(self.catalogue, args, _not_run, call_id=call_id)
        except REFUSALS as exc:
            return ToolGuardrailFunctionOutput.reject_content(refusal_text(exc), output_info={"acgs": "refused"})
        except Exception as exc:  # noqa: BLE001 - any fault here is a refusal, never a pass
            return ToolGuardrailFunctionOutput.reject_content(f"Tool call refused: {exc}", output_info={"acgs": "fault"})
        return ToolGuardrailFunctionOutput.reject_content("Tool call refused", output_info={"acgs": "fault"})

    async def invoke(self, ctx: ToolContext[Any], raw: str) -> Any:
        try:
            args = _arguments(raw)
        except _Unreadable as exc:
            return f"Tool call refused: {exc}"
        approved = ctx.is_tool_approved(self.tool.name, ctx.tool_call_id) is True
        settled: dict[str, Any] = {"approved": True, "approver": APPROVER} if approved else {}
        try:
            return await self.guard.acall(
                self.catalogue, args, lambda: self.invoke_tool(ctx, raw), call_id=ctx.tool_call_id or None, **settled
            )
        except REFUSALS as exc:
            return refusal_text(exc)


def guard_tool(guard: Guard, tool: FunctionTool, *, name: str | None = None) -> FunctionTool:
    """``tool`` with ``guard`` in front of it: approval check, input guardrail (first of its
    guardrails) and invoker. ``name``: the tool's name in the constitution's catalogue, when
    not the tool's own (model-facing names cannot hold dots: ``payments.transfer``)."""
    g = _Guarded(guard, tool, name or tool.name)
    guardrail: ToolInputGuardrail[Any] = ToolInputGuardrail(guardrail_function=g.check_input, name="acgs_guard")
    return dataclasses.replace(
        tool,
        on_invoke_tool=g.invoke,
        needs_approval=g.needs_approval,
        tool_input_guardrails=[guardrail, *(tool.tool_input_guardrails or [])],
    )


def guard_tools(guard: Guard, tools: Iterable[FunctionTool], *, tool_names: Mapping[str, str] | None = None) -> list[FunctionTool]:
    """Every tool guarded by ``guard``; ``tool_names`` maps a tool's name to its catalogue name."""
    return [guard_tool(guard, t, name=catalogue_name(tool_names, t.name)) for t in tools]
