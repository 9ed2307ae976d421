"""Request and response bodies of the evolution service.

A change request takes the seed's field names (``type``, ``requested_by``) and the original
service's (``evolution_type``, ``submitter``). The body is checked for shape here; whether the
change may ship is the constitution's question, answered in ``assessment``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, StrictBool, StrictStr, model_validator

from acgs.services.evolution.records import EvolutionRecord, iso

Name = Annotated[StrictStr, Field(min_length=1, max_length=256)]
Text = Annotated[StrictStr, Field(max_length=10_000)]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=10_000)]
Number = Annotated[float, Field(strict=False, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RollbackStepIn(_Strict):
    """One step of a rollback plan: the name of an action the rollback executor knows, with its
    parameters."""

    action: Name
    params: dict[str, Any] = Field(default_factory=dict)
    description: Text | None = None


class RollbackPlanIn(_Strict):
    procedure: Text | None = None
    #: Steps the service carries out on rollback, in order; a bare string names an action.
    steps: list[RollbackStepIn | Name] | None = Field(default=None, max_length=100)
    tested: StrictBool = False
    automated: StrictBool = False

    @model_validator(mode="after")
    def _has_a_way_back(self) -> RollbackPlanIn:
        if not (self.procedure and self.procedure.strip()) and not self.steps:
            raise ValueError("rollback_plan needs a procedure or at least one step")
        return self

    def policy_input(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tested": self.tested, "automated": self.automated}
        if self.procedure is not None:
            out["procedure"] = self.procedure
        if self.steps is not None:
            out["steps"] = [
                {"action": s, "params": {}} if isinstance(s, str) else s.model_dump(exclude_none=True) for s in self.steps
            ]
        return out


class ChangesIn(BaseModel):
    """What the change does. The flags the constitution reads are typed; anything else (for
    example the seed's ``code_changes``) is kept as given."""

    model_config = ConfigDict(extra="allow")

    code_changes: list[StrictStr] | None = None
    external_dependencies: list[StrictStr] | StrictBool | None = None
    privilege_escalation: StrictBool | None = None
    network_changes: StrictBool | None = None
    experimental_features: StrictBool | None = None
    lines_changed: NonNegativeInt | None = Field(default=None, strict=True)
    user_interaction_changes: StrictBool | None = None
    decision_logic_changes: StrictBool | None = None
    data_handling_changes: StrictBool | None = None
    logging_disabled: StrictBool | None = None
    audit_disabled: StrictBool | None = None
    data_encryption_weakened: StrictBool | None = None


class PerformanceAnalysisIn(_Strict):
    complexity_delta: Number | None = None
    memory_delta: Number | None = None
    latency_delta: Number | None = None
    resource_delta: Number | None = None


class EvolutionRequestIn(_Strict):
    agent_id: Name
    type: Name | None = None
    #: The original service's name for ``type``.
    evolution_type: Name | None = None
    requested_by: Name | None = None
    #: The original service's name for ``requested_by``.
    submitter: Name | None = None
    constitutional_hash: StrictStr | None = None
    changes: ChangesIn
    rollback_plan: RollbackPlanIn
    performance_analysis: PerformanceAnalysisIn | None = None
    #: Mitigations the constitution credits: sandbox_deployment, gradual_rollout, canary, ...
    mitigations: dict[str, StrictBool] | None = None
    justification: Text | None = None
    version: Annotated[StrictStr, Field(max_length=256)] | None = None
    description: Text | None = None

    @model_validator(mode="after")
    def _one_name_each(self) -> EvolutionRequestIn:
        if self.type is not None and self.evolution_type is not None and self.type != self.evolution_type:
            raise ValueError("type and evolution_type disagree; send one of them")
        if self.type is None and self.evolution_type is None:
            raise ValueError("type (or evolution_type) is required")
        if self.requested_by is not None and self.submitter is not None and self.requested_by != self.submitter:
            raise ValueError("requested_by and submitter disagree; send one of them")
        return self

    @property
    def change_type(self) -> str:
        return self.type or self.evolution_type or ""

    @property
    def requester(self) -> str | None:
        return self.requested_by or self.submitter

    def submission(self, requested_by: str) -> dict[str, Any]:
        """What is stored as the request: the canonical field names only."""
        out: dict[str, Any] = {
            "type": self.change_type,
            "requested_by": requested_by,
            "changes": self.changes.model_dump(exclude_none=True),
            "rollback_plan": self.rollback_plan.policy_input(),
        }
        if self.performance_analysis is not None:
            out["performance_analysis"] = self.performance_analysis.model_dump(exclude_none=True)
        for key in ("mitigations", "justification", "version", "description", "constitutional_hash"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def policy_input(record_submission: dict[str, Any], agent_id: str, constitutional_hash: str | None) -> dict[str, Any]:
    """The input of ``acgs/evolution/decision`` for a stored submission. A request that names
    no constitutional hash is assessed under the loaded constitution's."""
    out: dict[str, Any] = {
        "agent_id": agent_id,
        "requested_by": record_submission["requested_by"],
        "type": record_submission["type"],
        "changes": record_submission["changes"],
        "rollback_plan": record_submission["rollback_plan"],
    }
    for key in ("performance_analysis", "mitigations", "justification"):
        if key in record_submission:
            out[key] = record_submission[key]
    claimed = record_submission.get("constitutional_hash", constitutional_hash)
    if claimed is not None:
        out["constitutional_hash"] = claimed
    return out


class ReviewIn(_Strict):
    reason: Reason


class CancelIn(_Strict):
    reason: Text | None = None


class DeployIn(_Strict):
    note: Text | None = None


class RollbackIn(_Strict):
    reason: Reason
    #: For a plan with a procedure and no steps: the caller states that the procedure was
    #: carried out by hand.
    attest_manual: StrictBool = False


class ApprovalOut(BaseModel):
    reviewer: str
    reason: str
    approved_at: str


class EvolutionRequestOut(BaseModel):
    request_id: str
    decision_id: str
    agent_id: str
    requested_by: str
    type: str
    status: str
    approval_type: str
    reviewers_required: int
    approvals: list[ApprovalOut]
    risk_score: float
    risk_level: str | None
    evolution_score: float
    reasons: list[str]
    conditions: list[str]
    violations: list[str]
    factors: list[dict[str, Any]]
    score_components: dict[str, Any]
    constitutional_hash: str | None
    bundle_digest: str | None
    engine_fault: str | None
    created_at: str
    updated_at: str
    review_deadline: str | None
    valid_until: str
    submission: dict[str, Any]
    history: list[dict[str, Any]]
    rejection: dict[str, Any] | None
    deployment: dict[str, Any] | None
    rollbacks: list[dict[str, Any]]

    @classmethod
    def of(cls, r: EvolutionRecord) -> EvolutionRequestOut:
        a = r.assessment
        return cls(
            request_id=r.request_id,
            decision_id=r.decision_id,
            agent_id=r.agent_id,
            requested_by=r.requested_by,
            type=r.type,
            status=r.status.value,
            approval_type=r.approval_type,
            reviewers_required=r.reviewers_required,
            approvals=[
                ApprovalOut(reviewer=x.reviewer, reason=x.reason, approved_at=iso(x.approved_at) or "") for x in r.approvals
            ],
            risk_score=a.get("risk_score", 1.0),
            risk_level=a.get("risk_level"),
            evolution_score=a.get("evolution_score", 0.0),
            reasons=list(a.get("reasons", [])),
            conditions=list(a.get("conditions", [])),
            violations=list(a.get("violations", [])),
            factors=list(a.get("factors", [])),
            score_components=dict(a.get("score_components") or {}),
            constitutional_hash=a.get("constitutional_hash"),
            bundle_digest=a.get("bundle_digest"),
            engine_fault=a.get("engine_fault"),
            created_at=iso(r.created_at) or "",
            updated_at=iso(r.updated_at) or "",
            review_deadline=iso(r.review_deadline) if r.status.value == "pending" else None,
            valid_until=iso(r.valid_until) or "",
            submission=r.submission,
            history=r.history,
            rejection=r.rejection,
            deployment=r.deployment,
            rollbacks=r.rollbacks,
        )


class EvolutionRequestPage(BaseModel):
    items: list[EvolutionRequestOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class ErrorOut(BaseModel):
    code: str
    message: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
