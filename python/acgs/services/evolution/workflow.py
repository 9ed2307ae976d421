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
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from acgs.services.common.observability import note_decision
from acgs.services.evolution.assessment import Assessor
from acgs.services.evolution.audit import audit_event
from acgs.services.evolution.metrics import EvolutionMetrics
from acgs.services.evolution.records import Approval, EvolutionRecord, Status, iso
from acgs.services.evolution.rollback import RollbackExecutor, RollbackStep
from acgs.services.evolution.schemas import ActionRequestIn, EvolutionRequestIn, policy_input
from acgs.services.evolution.store import EvolutionStore, RequestNotFound, RequestTransaction

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

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class DecisionReused(WorkflowError):
    """An action request names a decision id already used for a different action."""

    status = 409
    code = "decision_reused"


#: How an action request is routed (``assessment.approval_type``).
ACTION_REVIEW = "action_review"


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
    ) -> None:
        self.store = store
        self.metrics = metrics or EvolutionMetrics()
        self.assessor = assessor
        self.executor = executor
        self.review_timeout = review_timeout
        self.validity = validity
        self.step_timeout = step_timeout
        self.clock = clock

    # -- helpers ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, request_id: str) -> AsyncIterator[RequestTransaction]:
        try:
            async with self.store.locked(request_id) as tx:
                yield tx
        except RequestNotFound:
            raise RequestMissing(f"no evolution request {request_id!r}") from None

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

    async def submit(
        self, body: EvolutionRequestIn, caller: Principal | None, trusted: bytes | None = None
    ) -> EvolutionRecord:
        """Assesses and stores a change request. ``trusted`` is the caller's facts
        (``acgs.trust``), given to the constitution in place of anything the client sent."""
        requested_by = body.requester or (caller.identity if caller is not None else None)
        if not requested_by:
            raise InvalidRequest("requested_by (or submitter) is required")
        constitution = self.assessor.constitutional_hash
        if body.constitutional_hash is not None and constitution is not None and body.constitutional_hash != constitution:
            raise HashMismatch(
                f"the request names constitutional hash {body.constitutional_hash!r}; this service runs {constitution!r}"
            )
        known = self.assessor.known_types
        if known is not None and body.change_type not in known:
            raise InvalidRequest(f"unknown change type {body.change_type!r}; expected one of {', '.join(sorted(known))}")

        now = self.clock()
        submission = body.submission(requested_by)
        assessment = await self.assessor.assess(policy_input(submission, body.agent_id, constitution), trusted)
        valid_until = now + self.validity
        record = EvolutionRecord(
            request_id=f"evo_{uuid.uuid4().hex}",
            decision_id=str(uuid.uuid4()),
            agent_id=body.agent_id,
            requested_by=requested_by,
            status=P,
            created_at=now,
            updated_at=now,
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
            actor = SERVICE if assessment.engine_fault else CONSTITUTION
            reason = "; ".join(decision["violations"] or decision["reasons"])
            record = moved(record, R, actor=actor, reason=reason, now=now)
            record.rejection = {"by": actor, "reason": reason, "at": iso(now)}
            events.append(audit_event(record, "evolution.reject", actor=actor, previous=P.value, at=now, reason=reason))
        await self.store.insert(record, events)
        note_decision(record.decision_id)
        self.metrics.submission(route, assessment.engine_fault is not None)
        self.metrics.transition(None, P)
        if record.status is not P:
            self.metrics.transition(P, record.status)
        return record

    async def submit_action(
        self, body: ActionRequestIn, caller: Principal | None, arguments_sha256: str
    ) -> tuple[EvolutionRecord, bool]:
        """Holds one tool call for review; returns the request and whether it is new. The terms
        (reviewers, expiry, reasons) are the tool decision's, as the guard sends them; the
        decision id is the request's, so the guard's ``tool_call`` event and every transition
        share it. A second submission of the same decision answers the first request."""
        requested_by = body.requested_by or (caller.identity if caller is not None else None) or body.agent_id
        constitution = self.assessor.constitutional_hash
        if body.constitutional_hash is not None and constitution is not None and body.constitutional_hash != constitution:
            raise HashMismatch(
                f"the request names constitutional hash {body.constitutional_hash!r}; this service runs {constitution!r}"
            )
        request_id = action_request_id(body.agent_id, body.decision_id)
        existing = await self.store.get(request_id)
        if existing is not None:
            return self._same_action(existing, body, arguments_sha256), False

        now = self.clock()
        deadline = now + body.expires_seconds
        submission: dict[str, Any] = {
            "kind": "action",
            "type": "tool_call",
            "requested_by": requested_by,
            "tool": body.tool,
            "arguments_sha256": arguments_sha256,
            "arguments_redacted": body.arguments is None,
            "session_id": body.session_id,
            "labels": list(body.labels),
            "roles": list(body.roles),
            "expires_seconds": body.expires_seconds,
        }
        if body.arguments is not None:
            submission["arguments"] = body.arguments
        assessment: dict[str, Any] = {
            "approval_type": ACTION_REVIEW,
            "reviewers_required": body.reviewers_required,
            "reasons": list(body.reasons),
            "risk_level": body.risk,
            "constitutional_hash": body.constitutional_hash or constitution,
            "bundle_digest": self.assessor.bundle_digest,
        }
        record = EvolutionRecord(
            request_id=request_id,
            decision_id=body.decision_id,
            agent_id=body.agent_id,
            requested_by=requested_by,
            status=P,
            created_at=now,
            updated_at=now,
            review_deadline=deadline,
            # Once approved, the call may run for as long again as the review could take.
            valid_until=deadline + body.expires_seconds,
            submission=submission,
            assessment=assessment,
        )
        event = audit_event(
            record,
            "evolution.submit",
            actor=requested_by,
            previous=None,
            at=now,
            details={
                "kind": "action",
                "tool": body.tool,
                "session_id": body.session_id,
                "arguments_sha256": arguments_sha256,
                "reviewers_required": body.reviewers_required,
                "reasons": list(body.reasons),
                "risk_level": body.risk,
            },
        )
        try:
            await self.store.insert(record, [event])
        except Exception:
            # Two submissions of one decision at once: the other one's insert won.
            existing = await self.store.get(request_id)
            if existing is None:
                raise
            return self._same_action(existing, body, arguments_sha256), False
        note_decision(record.decision_id)
        self.metrics.submission(ACTION_REVIEW, False)
        self.metrics.transition(None, P)
        return record, True

    @staticmethod
    def _same_action(record: EvolutionRecord, body: ActionRequestIn, arguments_sha256: str) -> EvolutionRecord:
        s = record.submission
        if record.kind != "action" or s.get("tool") != body.tool or s.get("arguments_sha256") != arguments_sha256:
            raise DecisionReused(
                f"decision {body.decision_id} of agent {body.agent_id} is already request {record.request_id} "
                "for a different action"
            )
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
