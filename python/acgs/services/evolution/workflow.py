"""The life of a change request: submission and assessment, review, expiry, deployment and
rollback, as a state machine over the store.

    submit ──> pending ──approve (enough distinct reviewers)──> approved ──deploy──> deployed
      │          │  ├─reject (a reviewer)──> rejected                │                │
      │          │  ├─cancel (the requester)──> cancelled <──cancel──┤          rollback (all
      │          │  └─review deadline / validity passes──> expired <─┘          steps succeed)
      │          │                                (validity passes)                 │
      ├─ auto_approve ──> approved                                                  v
      └─ rejected by the constitution (or an engine fault) ──> rejected        rolled_back

A single action held for approval (``submit_action``: one tool call the constitution's tool
decision sent to review) is a request of kind ``action`` through the same machine: pending until
enough distinct reviewers approve (never the agent or its requester), a reviewer rejects, or
its expiry passes; approved, it is ``deployed`` when the guard claims it to run the call, once.

Every rule that reads the current state and then changes it runs inside ``store.locked``, so
two calls on one request never both see "pending"; every change writes its audit event in the
same transaction. Expiry is done in the service's name (actor ``acgs``), never a reviewer's.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acgs.guard.decision import ToolDecision, fault
from acgs.services.common.observability import note_decision
from acgs.services.evolution import actions
from acgs.services.evolution.assessment import Assessor
from acgs.services.evolution.audit import audit_event
from acgs.services.evolution.metrics import EvolutionMetrics
from acgs.services.evolution.records import Approval, AuditEvent, EvolutionRecord, Status, iso
from acgs.services.evolution.rollback import RollbackExecutor, RollbackStep
from acgs.services.evolution.schemas import ActionRequestIn, EvolutionRequestIn, policy_input
from acgs.services.evolution.store import EvolutionStore, RequestNotFound, RequestTransaction

if TYPE_CHECKING:
    from acgs.trust.sessions import SessionLedger

log = logging.getLogger("acgs.services.evolution")

P, A, R, E, C, D, RB = (
    Status.PENDING,
    Status.APPROVED,
    Status.REJECTED,
    Status.EXPIRED,
    Status.CANCELLED,
    Status.DEPLOYED,
    Status.ROLLED_BACK,
)

#: Every allowed state change; anything else is answered 409.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    P: frozenset({A, R, E, C}),
    A: frozenset({D, E, C}),
    D: frozenset({RB}),
    R: frozenset(),
    E: frozenset(),
    C: frozenset(),
    RB: frozenset(),
}

#: Who acts when no person does: the constitution's own routing, and the service's clock.
CONSTITUTION = "constitution"
SERVICE = "acgs"


class WorkflowError(Exception):
    """A refused operation; ``status`` is its HTTP status and ``code`` its stable name."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        #: Further members of the error's JSON body (e.g. ``reasons``).
        self.details = details


class InvalidRequest(WorkflowError):
    status = 422
    code = "invalid_request"


class HashMismatch(WorkflowError):
    status = 400
    code = "constitutional_hash_mismatch"


class RequestMissing(WorkflowError):
    status = 404
    code = "request_not_found"


class InvalidTransition(WorkflowError):
    status = 409
    code = "invalid_transition"


class RequestExpired(InvalidTransition):
    code = "request_expired"


class AlreadyApproved(WorkflowError):
    status = 409
    code = "already_approved"


class RollbackBusy(WorkflowError):
    status = 409
    code = "rollback_in_progress"


class NoRollbackSteps(WorkflowError):
    status = 409
    code = "no_rollback_steps"


class SelfReview(WorkflowError):
    """The requester (or the agent itself) tried to review its own change."""

    status = 403
    code = "self_review"


class NotPermitted(WorkflowError):
    status = 403
    code = "forbidden"


class ActionDenied(WorkflowError):
    """The service's own tool decision denies the call submitted for review: nothing is held
    for reviewers (the refusal is stored as a rejected request and audited)."""

    status = 403
    code = "action_denied"


class ApprovalNotRequired(WorkflowError):
    """The service's own tool decision allows the call: there is nothing to review, and an
    approval the call never needed is not given."""

    status = 409
    code = "approval_not_required"


class DecisionReused(WorkflowError):
    """An action request names a decision id already used for a different action."""

    status = 409
    code = "decision_reused"


#: How an action request is routed (``assessment.approval_type``).
ACTION_REVIEW = "action_review"

#: The actions a transaction moved out of pending, to settle in the session ledger once it
#: has committed (``Workflow._locked``).
_DECIDED: contextvars.ContextVar[list[EvolutionRecord] | None] = contextvars.ContextVar("acgs_evolution_decided", default=None)


def action_request_id(agent_id: str, decision_id: str) -> str:
    """The request id of an agent's action under one tool decision: the same decision gives the
    same request, however often it is submitted."""
    digest = hashlib.sha256(f"{agent_id}\x00{decision_id}".encode()).hexdigest()
    return f"act_{digest[:32]}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and in which roles (``agent``, ``reviewer``, ``deployer``, ``admin``)."""

    identity: str
    roles: frozenset[str] = frozenset()

    def has(self, *roles: str) -> bool:
        return "admin" in self.roles or any(r in self.roles for r in roles)


def overdue(record: EvolutionRecord, now: float) -> str | None:
    """Why the request has expired by ``now``, or None."""
    if record.status is P:
        if record.review_deadline is not None and now >= record.review_deadline:
            return f"no decision by the review deadline {iso(record.review_deadline)}"
        if now >= record.valid_until:
            return f"the assessment's validity ended at {iso(record.valid_until)}"
    elif record.status is A and now >= record.valid_until:
        return f"not deployed before the assessment's validity ended at {iso(record.valid_until)}"
    return None


def moved(record: EvolutionRecord, to: Status, *, actor: str, reason: str | None, now: float) -> EvolutionRecord:
    """The record after a state change, with its history entry; refuses a change the state
    machine does not allow."""
    if to not in TRANSITIONS[record.status]:
        raise InvalidTransition(f"request {record.request_id} is {record.status.value}; it cannot become {to.value}")
    out = record.copy()
    out.history.append({"from": record.status.value, "to": to.value, "at": iso(now), "actor": actor, "reason": reason})
    out.status = to
    out.updated_at = now
    return out


class Workflow:
    def __init__(
        self,
        store: EvolutionStore,
        assessor: Assessor,
        executor: RollbackExecutor,
        *,
        review_timeout: float,
        validity: float,
        step_timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
        metrics: EvolutionMetrics | None = None,
        session_ledger: SessionLedger | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or EvolutionMetrics()
        self.assessor = assessor
        self.executor = executor
        self.review_timeout = review_timeout
        self.validity = validity
        self.step_timeout = step_timeout
        self.clock = clock
        #: The services' record of sessions (``acgs.trust.sessions``): an action's decision
        #: there is settled when reviewers decide it, or it expires or is cancelled.
        self.session_ledger = session_ledger

    # -- helpers ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, request_id: str) -> AsyncIterator[RequestTransaction]:
        """The request's transaction. Actions it decided are settled in the session ledger
        once it has committed (never for a change that rolled back)."""
        decided: list[EvolutionRecord] = []
        token = _DECIDED.set(decided)
        try:
            async with self.store.locked(request_id) as tx:
                yield tx
        except RequestNotFound:
            raise RequestMissing(f"no evolution request {request_id!r}") from None
        finally:
            _DECIDED.reset(token)
        for record in decided:
            await self._settle_session(record)

    async def _settle_session(self, record: EvolutionRecord) -> None:
        """Tells the session ledger how the action's decision ended: ``approved``, or
        ``rejected`` (a reviewer's no, expiry, cancellation). When this fails the entry stays
        ``require_approval``, which the session rules count as a call that may have run."""
        ledger = self.session_ledger
        if ledger is None:
            return
        outcome = "approved" if record.status is A else "rejected"
        owner = record.submission.get("session_owner")
        try:
            await ledger.settle(
                record.decision_id, outcome, tool=str(record.submission.get("tool", "")), owner=owner if isinstance(owner, str) else None
            )
        except Exception as exc:  # the ledger's fault leaves the entry pending: stricter, never laxer
            log.warning("settling decision %s in the session ledger failed: %s", record.decision_id, exc)

    async def _commit(
        self,
        tx: RequestTransaction,
        record: EvolutionRecord,
        action: str,
        *,
        actor: str,
        previous: Status,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> EvolutionRecord:
        saved = await tx.save(record)
        note_decision(saved.decision_id)
        await tx.audit(
            audit_event(saved, action, actor=actor, previous=previous.value, at=saved.updated_at, reason=reason, details=details)
        )
        if saved.status is not previous:
            self.metrics.transition(previous, saved.status)
            if saved.kind == "action" and previous is P:
                decided = _DECIDED.get()
                if decided is not None:
                    decided.append(saved)
            if previous is P and saved.status in (A, R) and actor not in (CONSTITUTION, SERVICE):
                self.metrics.reviewed("approved" if saved.status is A else "rejected", saved.updated_at - saved.created_at)
        return saved

    async def _expire(self, tx: RequestTransaction, now: float, why: str) -> EvolutionRecord:
        record = tx.record
        out = moved(record, E, actor=SERVICE, reason=why, now=now)
        return await self._commit(tx, out, "evolution.expire", actor=SERVICE, previous=record.status, reason=why)

    @staticmethod
    def _not_own(record: EvolutionRecord, who: Principal, verb: str) -> None:
        what = "action" if record.kind == "action" else "change"
        if who.identity == record.requested_by:
            raise SelfReview(f"{who.identity} requested this {what} and cannot {verb} it")
        if who.identity == record.agent_id:
            raise SelfReview(f"agent {who.identity} cannot {verb} its own {what}")

    # -- submission -------------------------------------------------------------------------

    def _constitution(self, claimed: str | None) -> str | None:
        """The loaded constitution's hash; ``HashMismatch`` when the request names another."""
        constitution = self.assessor.constitutional_hash
        if claimed is not None and constitution is not None and claimed != constitution:
            raise HashMismatch(f"the request names constitutional hash {claimed!r}; this service runs {constitution!r}")
        return constitution

    @staticmethod
    def _new_record(
        request_id: str,
        decision_id: str,
        agent_id: str,
        requested_by: str,
        *,
        now: float,
        review_deadline: float | None,
        valid_until: float,
        submission: dict[str, Any],
        assessment: dict[str, Any],
    ) -> EvolutionRecord:
        """A request as submitted (pending), before the constitution's routing moves it."""
        return EvolutionRecord(
            request_id=request_id,
            decision_id=decision_id,
            agent_id=agent_id,
            requested_by=requested_by,
            status=P,
            created_at=now,
            updated_at=now,
            review_deadline=review_deadline,
            valid_until=valid_until,
            submission=submission,
            assessment=assessment,
        )

    @staticmethod
    def _refused(record: EvolutionRecord, *, engine_fault: bool, reason: str, now: float) -> tuple[EvolutionRecord, AuditEvent]:
        """A submission the constitution (or, on an engine fault, the service) rejects outright,
        and its audit event."""
        actor = SERVICE if engine_fault else CONSTITUTION
        out = moved(record, R, actor=actor, reason=reason, now=now)
        out.rejection = {"by": actor, "reason": reason, "at": iso(now)}
        return out, audit_event(out, "evolution.reject", actor=actor, previous=P.value, at=now, reason=reason)

    async def _insert(self, record: EvolutionRecord, events: list[AuditEvent], route: str, *, engine_fault: bool) -> None:
        await self.store.insert(record, events)
        note_decision(record.decision_id)
        self.metrics.submission(route, engine_fault)
        self.metrics.transition(None, P)
        if record.status is not P:
            self.metrics.transition(P, record.status)

    async def submit(
        self, body: EvolutionRequestIn, caller: Principal | None, trusted: bytes | None = None
    ) -> EvolutionRecord:
        """Assesses and stores a change request. ``trusted`` is the caller's facts
        (``acgs.trust``), given to the constitution in place of anything the client sent."""
        requested_by = body.requester or (caller.identity if caller is not None else None)
        if not requested_by:
            raise InvalidRequest("requested_by (or submitter) is required")
        constitution = self._constitution(body.constitutional_hash)
        known = self.assessor.known_types
        if known is not None and body.change_type not in known:
            raise InvalidRequest(f"unknown change type {body.change_type!r}; expected one of {', '.join(sorted(known))}")

        now = self.clock()
        submission = body.submission(requested_by)
        assessment = await self.assessor.assess(policy_input(submission, body.agent_id, constitution), trusted)
        valid_until = now + self.validity
        record = self._new_record(
            f"evo_{uuid.uuid4().hex}",
            str(uuid.uuid4()),
            body.agent_id,
            requested_by,
            now=now,
            review_deadline=min(now + self.review_timeout, valid_until),
            valid_until=valid_until,
            submission=submission,
            assessment=assessment.as_json(),
        )
        decision = assessment.decision
        events = [
            audit_event(
                record,
                "evolution.submit",
                actor=requested_by,
                previous=None,
                at=now,
                details={
                    "risk_score": decision["risk_score"],
                    "evolution_score": decision["evolution_score"],
                    "reviewers_required": decision["reviewers_required"],
                    "reasons": decision["reasons"],
                    "bundle_digest": assessment.bundle_digest,
                    "engine_fault": assessment.engine_fault,
                },
            )
        ]
        route = decision["approval_type"]
        if route == "auto_approve":
            reason = "; ".join(decision["reasons"]) or "auto-approved by the constitution"
            record = moved(record, A, actor=CONSTITUTION, reason=reason, now=now)
            events.append(audit_event(record, "evolution.auto_approve", actor=CONSTITUTION, previous=P.value, at=now, reason=reason))
        elif route == "rejected":
            reason = "; ".join(decision["violations"] or decision["reasons"])
            record, event = self._refused(record, engine_fault=assessment.engine_fault is not None, reason=reason, now=now)
            events.append(event)
        await self._insert(record, events, route, engine_fault=assessment.engine_fault is not None)
        return record

    async def submit_action(
        self,
        body: ActionRequestIn,
        caller: Principal | None,
        call: actions.SubmittedCall,
        arguments_sha256: str,
        trusted: bytes | None = None,
        *,
        session_owner: str | None = None,
    ) -> tuple[EvolutionRecord, bool]:
        """Holds one tool call for review; returns the request and whether it is new.

        The service decides the call itself (``actions.decide``: the constitution's tool
        decision on ``call`` with the caller's ``trusted`` facts) and the review's terms are
        that decision's; the body's ``reviewers_required`` and ``expires_seconds`` may only make
        them stricter. A deny is stored as a rejected request, audited, and raised as
        ``ActionDenied``; an allow is ``ApprovalNotRequired`` (nothing stored). The decision id
        is the guard's, so its ``tool_call`` event and every transition share it; a second
        submission of the same decision answers the first request. ``session_owner``: the
        caller's key in the session ledger, so that only its own entry is ever settled."""
        requested_by = body.requested_by or (caller.identity if caller is not None else None) or body.agent_id
        constitution = self._constitution(body.constitutional_hash)
        request_id = action_request_id(body.agent_id, body.decision_id)
        existing = await self.store.get(request_id)
        if existing is not None:
            return self._same_action(existing, body, arguments_sha256), False

        decision = await actions.decide(self.assessor, call, trusted)
        if decision.outcome == "allow":
            raise ApprovalNotRequired(
                f"tool {decision.tool!r} is allowed with these arguments: it needs no approval; run it under its own decision",
                reasons=decision.reasons,
                outcome="allow",
            )
        terms: actions.ActionTerms | None = None
        if decision.outcome == "require_approval":
            found = actions.terms_of(decision, reviewers=body.reviewers_required, expires_seconds=body.expires_seconds)
            if isinstance(found, str):
                decision = fault(body.decision_id, decision.tool, f"policy engine fault: {found}")
            else:
                terms = found

        now = self.clock()
        # A fault's arguments are redacted too: what the catalogue says of them is unknown.
        redacted = decision.redact_arguments
        submission: dict[str, Any] = {
            "kind": "action",
            "type": "tool_call",
            "requested_by": requested_by,
            "tool": body.tool,
            "arguments_sha256": arguments_sha256,
            "arguments_redacted": redacted,
            "session_id": body.session_id,
        }
        if not redacted:
            submission["arguments"] = body.arguments
        if session_owner is not None and body.session_id is not None:
            submission["session_owner"] = session_owner
        assessment = self._action_assessment(decision, terms, body, constitution)
        if terms is None:
            record = self._new_record(
                request_id, body.decision_id, body.agent_id, requested_by,
                now=now, review_deadline=None, valid_until=now, submission=submission, assessment=assessment,
            )  # fmt: skip
        else:
            deadline = now + terms.expires_seconds
            record = self._new_record(
                request_id, body.decision_id, body.agent_id, requested_by,
                # Once approved, the call may run for as long again as the review could take.
                now=now, review_deadline=deadline, valid_until=deadline + terms.expires_seconds,
                submission=submission, assessment=assessment,
            )  # fmt: skip
        details: dict[str, Any] = {
            "kind": "action",
            "tool": body.tool,
            "session_id": body.session_id,
            "arguments_sha256": arguments_sha256,
            "outcome": decision.outcome,
            "reviewers_required": assessment["reviewers_required"],
            "reasons": list(decision.reasons),
            "risk_level": decision.risk,
        }
        if terms is not None:
            details.update(expires_seconds=terms.expires_seconds, roles=terms.roles)
        if decision.fault is not None:
            details["engine_fault"] = decision.fault
        events = [audit_event(record, "evolution.submit", actor=requested_by, previous=None, at=now, details=details)]
        if terms is None:
            record, event = self._refused(record, engine_fault=decision.fault is not None, reason="; ".join(decision.reasons), now=now)
            events.append(event)
        try:
            await self._insert(record, events, assessment["approval_type"], engine_fault=decision.fault is not None)
        except Exception:
            # Two submissions of one decision at once: the other one's insert won.
            existing = await self.store.get(request_id)
            if existing is None:
                raise
            return self._same_action(existing, body, arguments_sha256), False
        if terms is None:
            raise self._denied(record)
        return record, True

    def _action_assessment(
        self, decision: ToolDecision, terms: actions.ActionTerms | None, body: ActionRequestIn, constitution: str | None
    ) -> dict[str, Any]:
        """What the service's tool decision said, as the request's assessment."""
        out: dict[str, Any] = {
            "approval_type": ACTION_REVIEW if terms is not None else "rejected",
            "outcome": decision.outcome,
            "reviewers_required": terms.reviewers if terms is not None else 0,
            "reasons": list(decision.reasons),
            "violations": list(decision.reasons) if terms is None else [],
            "risk_level": decision.risk,
            "labels": list(decision.labels),
            "roles": terms.roles if terms is not None else [],
            "expires_seconds": terms.expires_seconds if terms is not None else None,
            "conditions": [
                name for name, on in (("sandbox", decision.sandbox), ("redact_arguments", decision.redact_arguments)) if on
            ],
            "known": decision.known,
            "constitutional_hash": decision.constitutional_hash or constitution,
            "bundle_digest": self.assessor.bundle_digest,
            "engine_fault": decision.fault,
        }
        claimed = {k: v for k, v in (("reviewers_required", body.reviewers_required), ("expires_seconds", body.expires_seconds)) if v is not None}
        if claimed:
            out["requested_terms"] = claimed
        return out

    @staticmethod
    def _denied(record: EvolutionRecord) -> ActionDenied:
        reasons = list(record.assessment.get("violations") or record.assessment.get("reasons") or [])
        tool = record.submission.get("tool")
        return ActionDenied(
            f"tool {tool!r} is denied: {'; '.join(reasons) or 'denied by the constitution'}",
            reasons=reasons,
            request_id=record.request_id,
            decision_id=record.decision_id,
        )

    def _same_action(self, record: EvolutionRecord, body: ActionRequestIn, arguments_sha256: str) -> EvolutionRecord:
        s = record.submission
        if record.kind != "action" or s.get("tool") != body.tool or s.get("arguments_sha256") != arguments_sha256:
            raise DecisionReused(
                f"decision {body.decision_id} of agent {body.agent_id} is already request {record.request_id} "
                "for a different action"
            )
        if record.status is R and (record.rejection or {}).get("by") in (CONSTITUTION, SERVICE):
            # Refused when submitted: refused again, the same way.
            raise self._denied(record)
        return record

    # -- reads (which expire lazily) --------------------------------------------------------

    async def get(self, request_id: str) -> EvolutionRecord:
        record = await self.store.get(request_id)
        if record is None:
            raise RequestMissing(f"no evolution request {request_id!r}")
        if overdue(record, self.clock()) is not None:
            async with self._locked(request_id) as tx:
                now = self.clock()
                why = overdue(tx.record, now)
                record = await self._expire(tx, now, why) if why else tx.record
        return record

    async def list_requests(
        self, *, status: Status | None, agent_id: str | None, limit: int, offset: int
    ) -> tuple[list[EvolutionRecord], int]:
        await self.expire_due()
        return await self.store.list_requests(status=status, agent_id=agent_id, limit=limit, offset=offset)

    async def count_by_status(self) -> dict[str, int]:
        """How many requests are in each state (for the ``acgs_evolution_requests`` gauge)."""
        counts: dict[str, int] = {}
        for status in Status:
            _, total = await self.store.list_requests(status=status, agent_id=None, limit=1, offset=0)
            counts[status.value] = total
        self.metrics.by_status = counts
        return counts

    async def expire_due(self) -> int:
        """Expires every overdue request; returns how many."""
        count = 0
        while True:
            due = await self.store.due_for_expiry(self.clock(), 500)
            done = 0
            for request_id in due:
                async with self._locked(request_id) as tx:
                    now = self.clock()
                    why = overdue(tx.record, now)
                    if why:
                        await self._expire(tx, now, why)
                        done += 1
            count += done
            if len(due) < 500 or done == 0:
                return count

    # -- review -----------------------------------------------------------------------------

    async def approve(self, request_id: str, reviewer: Principal, reason: str) -> EvolutionRecord:
        expired: str | None = None
        async with self._locked(request_id) as tx:
            now = self.clock()
            expired = overdue(tx.record, now)
            if expired:
                await self._expire(tx, now, expired)
            else:
                record = tx.record
                if record.status is not P:
                    raise InvalidTransition(
                        f"request {request_id} is {record.status.value}; only pending requests take approvals"
                    )
                self._not_own(record, reviewer, "approve")
                if any(a.reviewer == reviewer.identity for a in record.approvals) or not await tx.add_approval(
                    Approval(reviewer=reviewer.identity, reason=reason, approved_at=now)
                ):
                    raise AlreadyApproved(f"{reviewer.identity} has already approved request {request_id}")
                record = tx.record
                received = len(record.approvals)
                details = {
                    "approvals_received": received,
                    "reviewers_required": record.reviewers_required,
                    "reviewers": [a.reviewer for a in record.approvals],
                }
                if received >= record.reviewers_required:
                    out = moved(record, A, actor=reviewer.identity, reason=reason, now=now)
                    return await self._commit(
                        tx, out, "evolution.approve", actor=reviewer.identity, previous=P, reason=reason, details=details
                    )
                out = record.copy()
                out.updated_at = now
                return await self._commit(
                    tx, out, "evolution.approval_recorded", actor=reviewer.identity, previous=P, reason=reason, details=details
                )
        raise RequestExpired(f"request {request_id} expired: {expired}")

    async def reject(self, request_id: str, reviewer: Principal, reason: str) -> EvolutionRecord:
        expired: str | None = None
        async with self._locked(request_id) as tx:
            now = self.clock()
            expired = overdue(tx.record, now)
            if expired:
                await self._expire(tx, now, expired)
            else:
                record = tx.record
                if record.status is not P:
                    raise InvalidTransition(f"request {request_id} is {record.status.value}; only pending requests can be rejected")
                self._not_own(record, reviewer, "reject")
                out = moved(record, R, actor=reviewer.identity, reason=reason, now=now)
                out.rejection = {"by": reviewer.identity, "reason": reason, "at": iso(now)}
                return await self._commit(tx, out, "evolution.reject", actor=reviewer.identity, previous=P, reason=reason)
        raise RequestExpired(f"request {request_id} expired: {expired}")

    # -- the requester's side ---------------------------------------------------------------

    async def cancel(self, request_id: str, caller: Principal, reason: str | None) -> EvolutionRecord:
        expired: str | None = None
        async with self._locked(request_id) as tx:
            now = self.clock()
            record = tx.record
            if caller.identity != record.requested_by and not caller.has("admin"):
                raise NotPermitted(f"only the requester ({record.requested_by}) or an admin can cancel this request")
            expired = overdue(record, now)
            if expired:
                await self._expire(tx, now, expired)
            else:
                out = moved(record, C, actor=caller.identity, reason=reason, now=now)
                return await self._commit(
                    tx, out, "evolution.cancel", actor=caller.identity, previous=record.status, reason=reason
                )
        raise RequestExpired(f"request {request_id} expired: {expired}")

    async def deploy(self, request_id: str, caller: Principal, note: str | None) -> EvolutionRecord:
        expired: str | None = None
        async with self._locked(request_id) as tx:
            now = self.clock()
            record = tx.record
            if caller.identity != record.requested_by and not caller.has("deployer"):
                raise NotPermitted(f"only the requester ({record.requested_by}), a deployer or an admin can deploy it")
            expired = overdue(record, now)
            if expired:
                await self._expire(tx, now, expired)
            else:
                if record.status is not A:
                    raise InvalidTransition(f"request {request_id} is {record.status.value}; only approved changes deploy")
                out = moved(record, D, actor=caller.identity, reason=note, now=now)
                out.deployment = {"by": caller.identity, "at": iso(now), "note": note}
                return await self._commit(
                    tx,
                    out,
                    "evolution.deploy",
                    actor=caller.identity,
                    previous=A,
                    reason=note,
                    details={"conditions": record.assessment.get("conditions", [])},
                )
        raise RequestExpired(f"request {request_id} expired: {expired}")

    # -- rollback ---------------------------------------------------------------------------

    async def rollback(self, request_id: str, caller: Principal, reason: str, *, attest_manual: bool = False) -> EvolutionRecord:
        """Carries out the plan's steps through the executor, outside the request's lock (a
        step may take a while); a claim in the record keeps a second rollback out meanwhile.
        The request becomes rolled_back only if every step succeeded."""
        async with self._locked(request_id) as tx:
            now = self.clock()
            record = tx.record
            if caller.identity != record.requested_by and not caller.has("reviewer", "deployer"):
                raise NotPermitted(f"only the requester ({record.requested_by}), a reviewer, a deployer or an admin can roll back")
            if record.kind == "action":
                raise InvalidTransition(f"request {request_id} is a single action; an action that ran has no rollback plan")
            if record.status is not D:
                raise InvalidTransition(f"request {request_id} is {record.status.value}; only deployed changes roll back")
            last = record.rollbacks[-1] if record.rollbacks else None
            if last is not None and last.get("state") == "running" and now < float(last.get("claim_expires", 0)):
                raise RollbackBusy(f"a rollback of request {request_id} started at {last.get('started_at')} is running")
            plan = record.submission.get("rollback_plan") or {}
            steps = [RollbackStep.from_json(s) for s in plan.get("steps") or []]
            attempt: dict[str, Any] = {
                "attempt": len(record.rollbacks) + 1,
                "by": caller.identity,
                "reason": reason,
                "started_at": iso(now),
                "steps": [],
            }
            if not steps:
                if not attest_manual:
                    raise NoRollbackSteps(
                        "the rollback plan has a procedure and no steps; carry it out by hand and send attest_manual: true"
                    )
                attempt.update(
                    state="succeeded",
                    finished_at=iso(now),
                    steps=[
                        {
                            "index": 0,
                            "action": "manual_procedure",
                            "status": "attested",
                            "detail": f"{caller.identity} attests the procedure was carried out: {plan.get('procedure', '')}",
                        }
                    ],
                )
                out = moved(record, RB, actor=caller.identity, reason=reason, now=now)
                out.rollbacks.append(attempt)
                return await self._commit(
                    tx, out, "evolution.rollback", actor=caller.identity, previous=D, reason=reason, details={"steps": attempt["steps"]}
                )
            if attest_manual:
                raise InvalidRequest("attest_manual is for plans without steps; this plan's steps are carried out by the service")
            attempt.update(state="running", claim_expires=now + self.step_timeout * len(steps) + 60.0)
            out = record.copy()
            out.updated_at = now
            out.rollbacks.append(attempt)
            await self._commit(
                tx, out, "evolution.rollback_started", actor=caller.identity, previous=D, reason=reason,
                details={"steps": [s.action for s in steps]},
            )
            claimed = out

        outcomes = await self._run_steps(claimed, steps)
        succeeded = all(o["status"] == "succeeded" for o in outcomes)

        async with self._locked(request_id) as tx:
            now = self.clock()
            record = tx.record
            out = record.copy()
            finished = dict(attempt, state="succeeded" if succeeded else "failed", finished_at=iso(now), steps=outcomes)
            finished.pop("claim_expires", None)
            index = next((i for i, a in enumerate(out.rollbacks) if a.get("attempt") == attempt["attempt"]), None)
            if index is None:
                out.rollbacks.append(finished)
            else:
                out.rollbacks[index] = finished
            details = {"steps": outcomes, "attempt": attempt["attempt"]}
            if succeeded and record.status is D:
                out = moved(out, RB, actor=caller.identity, reason=reason, now=now)
                return await self._commit(tx, out, "evolution.rollback", actor=caller.identity, previous=D, reason=reason, details=details)
            out.updated_at = now
            return await self._commit(
                tx, out, "evolution.rollback_failed", actor=caller.identity, previous=record.status, reason=reason, details=details
            )

    async def _run_steps(self, record: EvolutionRecord, steps: list[RollbackStep]) -> list[dict[str, Any]]:
        outcomes: list[dict[str, Any]] = []
        failed = False
        for index, step in enumerate(steps):
            entry: dict[str, Any] = {"index": index, "action": step.action, "params": dict(step.params)}
            if failed:
                outcomes.append({**entry, "status": "skipped", "detail": "an earlier step failed"})
                continue
            started = self.clock()
            try:
                detail = await asyncio.wait_for(self.executor.run_step(record, step), self.step_timeout)
                entry.update(status="succeeded", detail=str(detail))
            except TimeoutError:
                failed = True
                entry.update(status="failed", detail=f"did not finish within {self.step_timeout:g}s")
            except Exception as exc:
                failed = True
                entry.update(status="failed", detail=f"{type(exc).__name__}: {exc}")
            entry.update(started_at=iso(started), finished_at=iso(self.clock()))
            outcomes.append(entry)
        return outcomes
