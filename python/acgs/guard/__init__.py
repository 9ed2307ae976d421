"""The guard of an agent's tool calls: ``acgs.Guard`` wraps tool functions so the constitution
(``acgs/tools/decision``) decides every call before it runs, and every call is audited once
(docs/agents.md)."""

from acgs.guard.approval import ApprovalServiceError, ReviewApprover
from acgs.guard.code import CodeResult, code_tool
from acgs.guard.decision import ENTRYPOINT, ToolDecision
from acgs.guard.guard import SANDBOX_REQUIRED, Approver, Guard, OutputCheck, note, running_decision
from acgs.guard.session import SessionHistory

__all__ = [
    "ENTRYPOINT",
    "SANDBOX_REQUIRED",
    "ApprovalServiceError",
    "Approver",
    "CodeResult",
    "Guard",
    "OutputCheck",
    "ReviewApprover",
    "SessionHistory",
    "ToolDecision",
    "code_tool",
    "note",
    "running_decision",
]
