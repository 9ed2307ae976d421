"""What the evolution service stores: a request (a change, or a single action held for
approval) with its assessment and history, the reviewers' approvals, and audit events waiting
in the outbox."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict


def iso(ts: float | None) -> str | None:
    """A timestamp as ISO 8601 UTC with milliseconds (``2025-07-02T10:00:00.000Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"


class AuditEvent(TypedDict):
    """The seed's audit body, as the audit service's ``POST /audit/event`` accepts it."""

    event_type: str
    agent_id: str
    action: str
    result: str
    metadata: dict[str, Any]
    decision_id: str
    constitutional_hash: str


@dataclass(slots=True)
class Approval:
    reviewer: str
    reason: str
    approved_at: float


@dataclass(slots=True)
class EvolutionRecord:
    """One change request. The columns a query filters on are attributes; everything else
    travels in ``doc`` so both backends store it the same way."""

    request_id: str
    decision_id: str
    agent_id: str
    requested_by: str
    status: Status
    created_at: float
    updated_at: float
    #: When a pending request expires unreviewed; None once it leaves pending.
    review_deadline: float | None
    #: When the assessment stops being valid: a change not deployed by then expires.
    valid_until: float
    #: What the agent asked for: type, changes, rollback_plan, performance_analysis, ...
    submission: dict[str, Any]
    #: What the constitution said: approval_type, reviewers_required, scores, reasons, ...
    assessment: dict[str, Any]
    #: Each state change: {from, to, at, actor, reason}; times in the doc are ISO 8601 strings.
    history: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    rejection: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    #: Every rollback attempt with each step's outcome, newest last.
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    #: Bumped by every save; a cheap check that a transaction saw the latest row.
    version: int = 0

    @property
    def type(self) -> str:
        return str(self.submission.get("type", ""))

    @property
    def kind(self) -> str:
        """``change`` (an agent changing itself) or ``action`` (one tool call held for approval)."""
        return str(self.submission.get("kind", "change"))

    @property
    def approval_type(self) -> str:
        return str(self.assessment.get("approval_type", "rejected"))

    @property
    def reviewers_required(self) -> int:
        value = self.assessment.get("reviewers_required", 0)
        return value if isinstance(value, int) else 0

    @property
    def constitutional_hash(self) -> str:
        return str(self.assessment.get("constitutional_hash") or "")

    def doc(self) -> dict[str, Any]:
        """The part stored as JSON (approvals live in their own table)."""
        return {
            "decision_id": self.decision_id,
            "submission": self.submission,
            "assessment": self.assessment,
            "history": self.history,
            "rejection": self.rejection,
            "deployment": self.deployment,
            "rollbacks": self.rollbacks,
        }

    @classmethod
    def from_parts(
        cls,
        *,
        request_id: str,
        agent_id: str,
        requested_by: str,
        status: str,
        created_at: float,
        updated_at: float,
        review_deadline: float | None,
        valid_until: float,
        version: int,
        doc: dict[str, Any],
        approvals: list[Approval],
    ) -> EvolutionRecord:
        return cls(
            request_id=request_id,
            decision_id=str(doc["decision_id"]),
            agent_id=agent_id,
            requested_by=requested_by,
            status=Status(status),
            created_at=created_at,
            updated_at=updated_at,
            review_deadline=review_deadline,
            valid_until=valid_until,
            submission=dict(doc.get("submission") or {}),
            assessment=dict(doc.get("assessment") or {}),
            history=list(doc.get("history") or []),
            approvals=approvals,
            rejection=doc.get("rejection"),
            deployment=doc.get("deployment"),
            rollbacks=list(doc.get("rollbacks") or []),
            version=version,
        )

    def copy(self) -> EvolutionRecord:
        return dataclasses.replace(
            self,
            history=list(self.history),
            approvals=list(self.approvals),
            rollbacks=list(self.rollbacks),
        )


@dataclass(slots=True)
class OutboxEntry:
    """An audit event in the outbox; ``delivered_at`` is set once the audit sink took it."""

    id: int
    event: AuditEvent
    created_at: float
    delivered_at: float | None
    attempts: int
    last_error: str | None
