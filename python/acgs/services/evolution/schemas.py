"""Request and response bodies of the evolution service.

A change request takes the seed's field names (``type``, ``requested_by``) and the original
service's (``evolution_type``, ``submitter``). The body is checked for shape here; whether the
change may ship is the constitution's question, answered in ``assessment``.

Numbers: the constitution compares ``changes.lines_changed`` (an integer: exact in Python) and
the ``performance_analysis`` deltas, which reach it as the client spelt them
(``EvolutionRequestIn.keep_exact_numbers``, ``ExactNumbers``): a double would read
``0.06015000000000000001`` as 0.06015, the very point where routing turns. No other number in a
request is read by the constitution.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PrivateAttr, StrictBool, StrictStr, model_validator

from acgs._acgs import exact_json
from acgs.services.evolution.records import EvolutionRecord, iso

Name = Annotated[StrictStr, Field(min_length=1, max_length=256)]
Text = Annotated[StrictStr, Field(max_length=10_000)]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=10_000)]
Number = Annotated[float, Field(strict=False, allow_inf_nan=False)]


class _Literal(str):
    """A JSON number's text, as the client wrote it."""


def number_literals(raw: bytes, member: str) -> dict[str, str]:
    """The text of each number among the members of ``raw[member]`` (``raw``: a JSON object),
    as the client spelt it. Raises ``acgs.errors.InvalidInputError`` for a body that repeats a
    key (parsers disagree on which one wins) or is not one JSON document."""
    text = exact_json(raw, member)
    if text is None:
        return {}
    doc = json.loads(text, parse_float=_Literal, parse_int=_Literal)
    if not isinstance(doc, dict):
        return {}
    return {k: str(v) for k, v in doc.items() if isinstance(v, _Literal)}


class ExactNumbers(dict[str, Any]):
    """An object of the request as Python reads it (numbers as doubles: what is stored and
    shown) that keeps each number's text as sent (``literals``) for the constitution."""

    __slots__ = ("literals",)

    def __init__(self, parsed: dict[str, Any], literals: dict[str, str]) -> None:
        super().__init__(parsed)
        self.literals = literals

    def for_policy(self) -> dict[str, Any]:
        """The object with every number as its literal (``orjson.Fragment``: the input is
        serialised with orjson)."""
        return {
            k: orjson.Fragment(self.literals[k])
            if k in self.literals and isinstance(v, int | float) and not isinstance(v, bool)
            else v
            for k, v in self.items()
        }


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
    #: At most a 64-bit integer: the policy input is written by orjson.
    lines_changed: NonNegativeInt | None = Field(default=None, strict=True, le=(1 << 63) - 1)
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
    #: The text of the numbers of ``performance_analysis`` as sent (``keep_exact_numbers``).
    _literals: dict[str, str] = PrivateAttr(default_factory=dict)

    def keep_exact_numbers(self, raw: bytes) -> None:
        """Remembers how ``raw`` (the body this request was parsed from) spells the numbers the
        constitution compares, so that it reads them as sent. Raises
        ``acgs.errors.InvalidInputError`` as ``number_literals`` does."""
        self._literals = number_literals(raw, "performance_analysis")

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
            out["performance_analysis"] = ExactNumbers(self.performance_analysis.model_dump(exclude_none=True), self._literals)
        for key in ("mitigations", "justification", "version", "description", "constitutional_hash"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def policy_input(record_submission: dict[str, Any], agent_id: str, constitutional_hash: str | None) -> dict[str, Any]:
    """The input of ``acgs/evolution/decision`` for a submission. A request that names no
    constitutional hash is assessed under the loaded constitution's. Numbers kept as sent
    (``ExactNumbers``) are ``orjson.Fragment``s: the input is serialised with orjson."""
    out: dict[str, Any] = {
        "agent_id": agent_id,
        "requested_by": record_submission["requested_by"],
        "type": record_submission["type"],
        "changes": record_submission["changes"],
        "rollback_plan": record_submission["rollback_plan"],
    }
    for key in ("performance_analysis", "mitigations", "justification"):
        if key in record_submission:
            value = record_submission[key]
            out[key] = value.for_policy() if isinstance(value, ExactNumbers) else value
    claimed = record_submission.get("constitutional_hash", constitutional_hash)
    if claimed is not None:
        out["constitutional_hash"] = claimed
    return out


#: Bounds of what an action request may ask beyond the constitution's terms: at most this many
#: reviewers (the constitution's own number may be higher), and an expiry only shorter than the
#: constitution's.
MAX_REVIEWERS = 10
MAX_EXPIRES_SECONDS = 7 * 86400
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class AgentClaimIn(BaseModel):
    """What the agent says of itself (``input.agent`` of the tool decision): a claim. With
    authentication on it can only lower the trust level the agent registry records; with it off
    (one operator) it stands. Numbers reach the constitution as sent."""

    model_config = ConfigDict(extra="allow")

    trust_level: Number | None = None


class ActionRequestIn(_Strict):
    """One tool call the guard's tool decision (``acgs/tools/decision``) held for approval. The
    service decides the call again itself, on these arguments and the caller's trusted facts,
    and the review's terms (reviewers, expiry, roles, reasons, risk, labels, redaction) are its
    own decision's. ``reviewers_required`` and ``expires_seconds`` may only make them stricter
    (more reviewers, a shorter expiry); ``reasons``, ``labels``, ``risk`` and ``roles`` are
    accepted from older guards and ignored. ``decision_id`` (the guard's decision) makes a
    submission idempotent: the same decision of the same agent is the same request."""

    agent_id: Name
    tool: Name
    decision_id: Name
    #: The call's arguments (the service decides on them; stored as the digest alone when the
    #: decision redacts them).
    arguments: dict[str, Any]
    #: SHA-256 (hex) of the arguments' canonical JSON (RFC 8785): checked when sent.
    arguments_sha256: Sha256 | None = None
    session_id: Name | None = None
    agent: AgentClaimIn | None = None
    #: At least the constitution's number of reviewers, at most ``MAX_REVIEWERS`` (when above
    #: the constitution's).
    reviewers_required: int | None = Field(default=None, ge=1, le=MAX_REVIEWERS, strict=True)
    #: At most the constitution's expiry: a longer one is cut to it.
    expires_seconds: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_SECONDS, strict=True)
    requested_by: Name | None = None
    constitutional_hash: StrictStr | None = None
    # Older guards sent the decision's terms; the service's own decision replaces them.
    reasons: list[Annotated[StrictStr, Field(max_length=2_000)]] | None = Field(default=None, max_length=100)
    labels: list[Name] | None = Field(default=None, max_length=100)
    risk: Name | None = None
    roles: list[Name] | None = Field(default=None, max_length=20)


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
    #: ``change`` (``POST /evolution/request``) or ``action`` (``POST /evolution/actions``).
    kind: str
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
    #: An action's terms as the service's tool decision set them: the roles it names for the
    #: review, the call's labels, the expiry, and what the body asked beyond them.
    roles: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    expires_seconds: int | None = None
    requested_terms: dict[str, Any] | None = None
    history: list[dict[str, Any]]
    rejection: dict[str, Any] | None
    deployment: dict[str, Any] | None
    rollbacks: list[dict[str, Any]]

    @classmethod
    def of(cls, r: EvolutionRecord) -> EvolutionRequestOut:
        a = r.assessment
        return cls(
            request_id=r.request_id,
            kind=r.kind,
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
            roles=list(a.get("roles") or []),
            labels=list(a.get("labels") or []),
            expires_seconds=a.get("expires_seconds"),
            requested_terms=a.get("requested_terms"),
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
    #: The service's own tool decision's reasons, when it refuses an action (``action_denied``,
    #: ``approval_not_required``).
    reasons: list[str] | None = None
