"""The evolution service's own word on a tool call submitted for review: the constitution's tool
decision (``acgs/tools/decision``) evaluated here, on the arguments the agent sent and the
caller's trusted facts (``acgs.trust``), never the guard's. The review's terms (reviewers,
expiry, roles, reasons, risk, labels, redaction) are this decision's; what the body asks may
only make them stricter.

Fail closed: a missing engine, an evaluation fault or a malformed decision is a deny naming the
fault (``acgs.guard.decision.read_result_set`` reads the result as the guard does).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import orjson

from acgs.guard.decision import ENTRYPOINT, ToolDecision, fault, read_result_set
from acgs.services.evolution.assessment import Assessor
from acgs.services.policy.sessions import call_session, own_entry
from acgs.trust import admit
from acgs.trust.sessions import SessionLedger

#: The rate kind an action submission counts under in the trusted facts. It is a kind of its
#: own: the guard's decision was already counted (as ``decision`` by the policy service, or by
#: the embedding program), and counting it as ``evolution`` would spend the agent's budget of
#: change requests. The shipped constitution declares no ``action`` limit, so no count is
#: reported; a constitution that declares ``rate_limits.per_minute.action`` gets one.
RATE_KIND: Final = "action"


@dataclass(frozen=True, slots=True)
class SubmittedCall:
    """The call as the service decides it. ``arguments`` and ``agent`` are exact JSON text as
    the client sent it (numbers as written)."""

    agent_id: str
    tool: str
    decision_id: str
    arguments: bytes
    session_id: str | None = None
    agent: bytes | None = None
    constitutional_hash: str | None = None
    #: Set when the call cannot be decided (its trusted facts are unavailable): a deny.
    fault: str | None = None

    def policy_input(self) -> bytes:
        """The input of ``acgs/tools/decision``. The session carries its id only: its history
        is a trusted fact (``trusted.session``), never the client's."""
        parts = [b'{"tool":', orjson.dumps(self.tool), b',"arguments":', self.arguments, b',"agent_id":', orjson.dumps(self.agent_id)]
        if self.agent is not None:
            parts += [b',"agent":', self.agent]
        if self.session_id is not None:
            parts += [b',"session":{"id":', orjson.dumps(self.session_id), b"}"]
        if self.constitutional_hash is not None:
            parts += [b',"constitutional_hash":', orjson.dumps(self.constitutional_hash)]
        parts.append(b"}")
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ActionTerms:
    """The terms of a review, as the service's decision sets them (tightened by the body)."""

    reviewers: int
    expires_seconds: int
    roles: list[str]


def terms_of(decision: ToolDecision, *, reviewers: int | None, expires_seconds: int | None) -> ActionTerms | str:
    """The terms of a ``require_approval`` decision, made stricter by what the body asked
    (``reviewers``: more reviewers; ``expires_seconds``: a shorter expiry); a string saying
    what is wrong when the decision's approval is malformed."""
    approval: dict[str, Any] = decision.approval or {}
    need, expiry, roles = approval.get("reviewers"), approval.get("expires_seconds"), approval.get("roles", [])
    if type(need) is not int or need < 1:
        return "the tool decision's approval names no number of reviewers (at least 1)"
    if type(expiry) is not int or expiry < 1:
        return "the tool decision's approval names no expiry (at least 1 second)"
    if type(roles) is not list or not all(type(r) is str for r in roles):
        return "the tool decision's approval roles are not a list of strings"
    if reviewers is not None and reviewers > need:
        need = reviewers
    if expires_seconds is not None and expires_seconds < expiry:
        expiry = expires_seconds
    return ActionTerms(need, expiry, list(roles))


async def session_member(ledger: SessionLedger, owner: str, session_id: str | None, decision_id: str, tool: str) -> bytes:
    """The ``trusted.session`` member of the service's decision on a submitted call: the
    session's history and the caller's calls across its sessions as the ledger has them, less
    the call's own entry. The policy service recorded the call under ``decision_id`` (waiting
    for approval) when it decided it, and a call is never its own predecessor: a tool that both
    reads private data and sends data out would otherwise be denied by its own entry. Left out
    only when the ledger holds ``decision_id`` as this caller's call of ``tool`` in this session
    held for review (``acgs.services.policy.sessions.own_entry``); any other entry counts.
    Raises when the ledger cannot be read."""
    own = decision_id if await own_entry(ledger, owner, session_id, decision_id, tool) else None
    return await call_session(ledger, owner, session_id, own)


async def decide(assessor: Assessor, call: SubmittedCall, trusted: bytes | None) -> ToolDecision:
    """The constitution's tool decision on ``call`` with the caller's ``trusted`` facts (which
    replace anything the client put under ``trusted``). Never raises: a fault is a deny."""
    if call.fault is not None:
        return fault(call.decision_id, call.tool, call.fault)
    engine = assessor.engine
    if engine is None:
        return fault(call.decision_id, call.tool, f"policy engine fault: {assessor.load_error or 'no policy engine'}")
    if ENTRYPOINT not in engine.entrypoints:
        return fault(call.decision_id, call.tool, f"policy engine fault: the bundle has no entrypoint {ENTRYPOINT}")
    try:
        raw = admit(call.policy_input(), trusted)
        result_set = await asyncio.to_thread(engine.evaluate_json, raw, ENTRYPOINT)
    except Exception as exc:  # any fault in the policy path is a deny
        code = getattr(exc, "code", type(exc).__name__)
        return fault(call.decision_id, call.tool, f"policy engine fault: {code}: {exc}")
    decision = read_result_set(result_set, call.decision_id, call.tool)
    expected = assessor.constitutional_hash
    if decision.fault is None and expected is not None and decision.constitutional_hash != expected:
        return fault(call.decision_id, call.tool, "policy engine fault: the tool decision names another constitutional hash")
    return decision


__all__ = ["RATE_KIND", "ActionTerms", "SubmittedCall", "decide", "session_member", "terms_of"]
