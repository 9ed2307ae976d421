"""The guard of an agent's tool calls: ``acgs.Guard`` wraps tool functions so the constitution
(``acgs/tools/decision``) decides every call before it runs, and every call is audited once
(docs/agents.md)."""

from acgs.guard.approval import ApprovalServiceError, ReviewApprover
from acgs.guard.decision import ENTRYPOINT, ToolDecision
from acgs.guard.guard import Approver, Guard, OutputCheck
from acgs.guard.session import SessionHistory

__all__ = [
    "ENTRYPOINT",
    "ApprovalServiceError",
    "Approver",
    "Guard",
    "OutputCheck",
    "ReviewApprover",
    "SessionHistory",
    "ToolDecision",
]
