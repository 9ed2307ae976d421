"""What the framework adapters share: the text a model reads for a refusal, the approval
payload a framework's pause shows, and how its answer reads (``Guard.call(approved=...)``
settles a call a framework's own human approval already answered)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from acgs.errors import ApprovalPending, ApprovalRequired, ToolDenied, ToolInputError, ToolOutputError
from acgs.guard import ToolDecision

#: What a guarded call raises instead of running (the model gets it as a tool error).
REFUSALS = (ToolDenied, ApprovalRequired, ToolInputError, ToolOutputError)
APPROVAL_TYPE = "acgs_tool_approval"


def catalogue_name(names: Mapping[str, str] | None, tool: str) -> str:
    """The tool's name in the constitution's catalogue (frameworks may forbid dots: a model
    sees ``payments_transfer``, the catalogue knows ``payments.transfer``)."""
    return names.get(tool, tool) if names else tool


def refusal_text(exc: BaseException) -> str:
    """What the model reads when a call did not run (or its result was withheld): the outcome,
    the reasons and the decision id, so it can say why or try something else."""
    decision_id = getattr(exc, "decision_id", None)
    tail = f" (ACGS decision {decision_id})" if decision_id else ""
    if isinstance(exc, ToolDenied):
        what = "rejected by a reviewer" if exc.outcome == "rejected" else "denied by the constitution"
        return f"Tool call {what}: {'; '.join(exc.reasons)}{tail}"
    if isinstance(exc, ApprovalPending):
        return f"Tool call not run yet: it waits for reviewers (approval request {exc.request_id}){tail}"
    if isinstance(exc, ApprovalRequired):
        why = "; ".join(exc.reasons) or "the constitution requires approval"
        return f"Tool call not run: it needs approval ({why}){tail}"
    if isinstance(exc, ToolInputError):
        return f"Tool call refused: {exc.message}{tail}"
    if isinstance(exc, ToolOutputError):
        return f"Tool result withheld: {exc.message}{tail}"
    return f"Tool call refused: {exc}"


def approval_payload(decision: ToolDecision, arguments: Mapping[str, Any], call_id: str | None) -> dict[str, Any]:
    """What a framework's pause shows the person who approves (JSON-serialisable; arguments
    left out when the catalogue redacts them)."""
    payload: dict[str, Any] = {
        "type": APPROVAL_TYPE,
        "tool_call_id": call_id,
        "tool": decision.tool,
        "decision_id": decision.decision_id,
        "reasons": list(decision.reasons),
        "approval": decision.approval,
        "constitutional_hash": decision.constitutional_hash,
    }
    if not decision.redact_arguments:
        payload["arguments"] = dict(arguments)
    return payload


def read_verdict(answer: Any) -> bool:
    """A resume value as an approval: ``True``, ``"approve"`` or ``{"approved": True}`` approve;
    anything else rejects (an unreadable answer is never an approval)."""
    if isinstance(answer, Mapping):
        answer = answer.get("approved", answer.get("type"))
    return answer is True or answer == "approve"


def read_approver(answer: Any, default: str) -> str:
    """Who gave a resume value, as the audit event's ``approved_by`` / ``rejected_by``: the
    answer's ``approver`` member when it names one (``{"approved": True, "approver": "alice"}``),
    else ``default`` (the framework)."""
    if isinstance(answer, Mapping):
        who = answer.get("approver")
        if isinstance(who, str) and who:
            return who[:200]
    return default
