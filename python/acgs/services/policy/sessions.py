"""The tool decision's session through the policy service: every evaluation of
``acgs/tools/decision`` (the entrypoint, a path inside it, or a document above it) gets the
session's history and the caller's history across all its sessions from the service's ledger
(``trusted.session.history`` and ``trusted.session.principal_history``, acgs.trust.sessions),
and is recorded there under the decision id the service answers with, before the answer
leaves. A client that only asks leaves a trace like one that then runs the tool; a call that
names no session is recorded in the caller's history all the same.

Calls of one session that overlap in time read the history before either is recorded. That
lets no data out: a call whose arguments carry what an earlier call read is made after that
earlier call's answer, and so after its record.

A call decided again after it asked for approval (a remote guard resuming it: the input names
the decision that asked, ``session.resumes``) is one call, not two. When the ledger holds that
decision as this caller's call of the same tool in the same session, among its last calls and
held for review (waiting, approved or rejected), its entry is left out of the histories the
call is judged on (a call is never its own predecessor), and the new decision is recorded only
if it allows the call outright: held for review (or denied), the call can only run on that
review, whose outcome settles the first entry, which stands for it. A name the ledger does not
confirm is ignored: the call is judged and recorded like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from acgs.services.policy.pipeline import Kind, Target, walk
from acgs.trust import with_member
from acgs.trust.sessions import APPROVED, MAX_DECISION_ID, PENDING, REJECTED, SessionLedger, canonical_tool, trusted_session

TOOLS_DECISION: Final = "acgs/tools/decision"
_SEGMENTS: Final = tuple(TOOLS_DECISION.split("/"))


def reaches_tools(target: Target) -> bool:
    """Whether evaluating ``target`` evaluates the tool decision."""
    if target.kind is Kind.ENTRYPOINT:
        return target.entrypoint == TOOLS_DECISION
    if target.kind is Kind.DOCUMENT:
        return _SEGMENTS[: len(target.rest)] == target.rest
    return False


def session_id_of(value: Any) -> str | None:
    """The session the input names (``session.id``, a string), or None."""
    if type(value) is dict:
        session = value.get("session")
        if type(session) is dict:
            sid = session.get("id")
            if type(sid) is str:
                return sid
    return None


def resumes_of(value: Any) -> str | None:
    """The decision the input says it decides again (``session.resumes``, a string), or None."""
    if type(value) is dict:
        session = value.get("session")
        if type(session) is dict:
            resumes = session.get("resumes")
            if type(resumes) is str and 0 < len(resumes) <= MAX_DECISION_ID:
                return resumes
    return None


async def own_entry(ledger: SessionLedger, owner: str, session_id: str | None, decision_id: str, tool: Any) -> bool:
    """Whether the ledger holds ``decision_id`` as ``owner``'s call of ``tool`` (canonical
    form) in this session (or in none, for None), still among the owner's last calls, held for
    review (waiting, approved or rejected): the entry a call decided again is. False for
    anything else (the call is then judged and recorded as a new one). Raises ``SessionHistoryUnavailable`` when the ledger cannot be read."""
    if type(tool) is not str:
        return False
    found = await ledger.held(owner, session_id, decision_id)
    return found is not None and found[0] == canonical_tool(tool) and found[1] in (PENDING, APPROVED, REJECTED)


async def call_session(ledger: SessionLedger, owner: str, session_id: str | None, own: str | None) -> bytes:
    """The ``trusted.session`` member of a call (``acgs.trust.sessions.trusted_session``), less
    the entry of ``own``, the call's own earlier decision (confirmed by ``own_entry``)."""
    return await trusted_session(ledger, owner, session_id, without=own)


@dataclass(slots=True)
class SessionCall:
    """One evaluation of the tool decision: whose session, and the input it decides."""

    ledger: SessionLedger
    owner: str
    session_id: str | None
    value: Any
    #: The call's own earlier decision, once the ledger confirmed it (``attach``).
    own: str | None = None

    async def attach(self, document: bytes | None) -> bytes:
        """The ``trusted`` document with the session member appended: ``id`` (when the call
        names a session), ``history`` (the session's; ``[]`` for a call that names none, a
        session of its own) and ``principal_history`` (the caller's across all its sessions),
        less the call's own earlier entry when it decides a call again (``session.resumes``).
        Raises ``SessionHistoryUnavailable`` when the ledger cannot be read."""
        resumes = resumes_of(self.value)
        tool = _requested_tool(self.value)
        if resumes is not None and await own_entry(self.ledger, self.owner, self.session_id, resumes, tool):
            self.own = resumes
        member = await call_session(self.ledger, self.owner, self.session_id, self.own)
        return with_member(document if document is not None else b"{}", "session", member)

    async def record(self, decision_id: str, decision: Any) -> None:
        """Records the decision (the tool decision's value; anything else, a fault or undefined,
        is a deny): in the session, when the call names one, and in the caller's history. A
        call decided again is recorded again only when now allowed outright: otherwise its
        first entry stands for it. Raises ``SessionHistoryUnavailable`` when the ledger cannot
        be written."""
        outcome, tool, labels = _summary(decision, self.value)
        if self.own is not None and outcome != "allow":
            return
        await self.ledger.record(self.owner, self.session_id, decision_id, tool, outcome, labels)


def _requested_tool(value: Any) -> Any:
    return value.get("tool") if type(value) is dict else None


def _summary(decision: Any, value: Any) -> tuple[str, str, list[str]]:
    """Outcome, canonical tool and labels of a tool decision; a deny unless the decision is
    well formed (an outcome that agrees with ``allow``)."""
    requested = value.get("tool") if type(value) is dict else None
    tool = canonical_tool(requested) if type(requested) is str else ""
    if type(decision) is not dict:
        return "deny", tool, []
    named = decision.get("tool")
    if type(named) is str:
        tool = named
    labels = decision.get("labels")
    labels = [x for x in labels if type(x) is str] if type(labels) is list else []
    outcome = decision.get("outcome")
    if outcome in ("allow", PENDING) and decision.get("allow") is (outcome == "allow"):
        return outcome, tool, labels
    return "deny", tool, labels


def decision_in(target: Target, result: Any) -> Any:
    """The tool decision inside what evaluating ``target`` gave (a document above it); None
    when absent."""
    if target.kind is not Kind.DOCUMENT:
        return result
    found, decision = walk(result, _SEGMENTS[len(target.rest) :])
    return decision if found else None
