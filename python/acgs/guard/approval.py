"""Approval of a single tool call by reviewers: ``ReviewApprover`` is a guard's approver that
holds a call the constitution sent to review (``require_approval``) as an action request in the
evolution service (``POST /evolution/actions``), then waits until reviewers decide it there
(the same review page, quorum, no self-approval and expiry as change requests).

The service decides the call again itself, with its own constitution and the caller's trusted
facts, and the review's terms (reviewers, expiry, roles, reasons) are its decision's: the
approver sends the call (agent, session, tool, arguments, and the agent's claims about itself),
never terms. A call the service denies is refused (``ToolDenied`` with the service's reasons);
one it finds needs no approval is refused too (an approval it never needed is not given).

Approved, the approver claims the request (it becomes ``deployed``: one approval runs one call)
and the guard runs the call; rejected, expired or cancelled, the call is refused; still pending
at the approver's timeout, it raises ``acgs.ApprovalPending`` carrying the request id and the
service's terms, and ``resume`` / ``aresume`` run the call later, once approved, for agents that
checkpoint.

The approver needs the call (agent, session, tool, arguments): it reads them from
``current_call``, which the guard sets around its approver for every call (``@guard.tool``,
``Guard.call``) and ``resume`` / ``aresume`` set with the request to re-check. Without them it
refuses: a reviewer never approves a call they cannot see.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from acgs import _acgs as core
from acgs.errors import ApprovalPending, ToolDenied
from acgs.guard.decision import ToolDecision, arguments_json

#: Request states that refuse the call; ``approved`` runs it, ``pending`` waits.
REFUSED: Final = frozenset({"rejected", "expired", "cancelled"})


class ApprovalServiceError(ToolDenied):
    """The evolution service could not take or answer an action request (unreachable, or an
    error status): the call is refused (a deny with the fault as its reason), never run."""

    code = "approval_service_error"

    def __init__(self, message: str, decision: Any = None) -> None:
        super().__init__(message, decision, outcome="rejected")


@dataclass(frozen=True, slots=True)
class ActionCall:
    """The call an approver is asked about. ``resume``: the request id of an earlier
    submission of this call, re-checked in place of a new submission. ``agent``: what the agent
    claims about itself (e.g. ``{"trust_level": 0.9}``), sent as a claim: with authentication
    on, the service's agent registry decides and a claim can only lower it. ``resumes``: the
    decision id that asked for the approval being resumed (the request's ``decision_id``). A
    remote guard names it with the call's new decision (``session.resumes``) so that the policy
    service, which checks it against its own record, decides the call without counting the
    call's own earlier entry as a call before it, and records no second entry for it: the
    first one stands for the call and the review settles it."""

    agent_id: str
    session_id: str | None
    tool: str
    arguments: Mapping[str, Any]
    resume: str | None = None
    agent: Mapping[str, Any] | None = None
    resumes: str | None = None


#: The call being decided, set around the guard's approver.
current_call: contextvars.ContextVar[ActionCall | None] = contextvars.ContextVar("acgs_current_call", default=None)


@contextmanager
def _calling(call: ActionCall) -> Iterator[None]:
    token = current_call.set(call)
    try:
        yield
    finally:
        current_call.reset(token)


def _request_id(pending: ApprovalPending | Mapping[str, Any] | str) -> str:
    if isinstance(pending, ApprovalPending):
        return pending.request_id
    if isinstance(pending, str):
        return pending
    value = pending.get("request_id")
    if not isinstance(value, str) or not value:
        raise ValueError("the pending handle has no request_id")
    return value


def _asking_decision(pending: ApprovalPending | Mapping[str, Any] | str) -> str | None:
    """The decision id that asked for the approval, as the pending handle names it (None for a
    bare request id: the approver reads it from the request)."""
    if isinstance(pending, ApprovalPending):
        value: Any = pending.decision_id
    elif isinstance(pending, str):
        return None
    else:
        value = pending.get("decision_id")
    return value if isinstance(value, str) and value else None


def _digest(args: bytes) -> tuple[str, bool]:
    """SHA-256 of the arguments' canonical JSON (as the guard's audit event has it), and
    whether the canonical form exists."""
    try:
        return hashlib.sha256(core.canonicalize_json(args)).hexdigest(), True
    except Exception:  # noqa: BLE001 - numbers a double would alter: the bytes' digest
        return hashlib.sha256(args).hexdigest(), False


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# -- the approval as a state machine over HTTP ---------------------------------------------------
#
# ``ReviewApprover._steps`` is the whole conversation with the service, written once: it yields
# what to do next (send a request, or sleep) and is sent the reply. ``wait`` drives it with a
# blocking client, ``await_decision`` with an asyncio one.


@dataclass(frozen=True, slots=True)
class _Send:
    method: str
    path: str
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


_Steps = Generator[_Send | _Sleep, httpx.Response | None, bool]


class ReviewApprover:
    """An approver (``Guard(approver=ReviewApprover(url, api_key))``) backed by the evolution
    service at ``url``. ``api_key``: the agent's credential (with authentication on it names the
    requester, who can never approve). ``agent``: what the agent claims about itself in every
    submission (``{"trust_level": 0.9}``); without it, the guard's ``trusted`` agent facts are
    sent as the claim (given, it wins over them); with authentication on it can only lower what the agent registry records, with it off it stands.
    ``timeout``: how long a call waits for reviewers before ``ApprovalPending`` (0: submit and
    raise at once); ``poll``: seconds between checks. Called from a coroutine (an async tool) it
    returns an awaitable and waits without blocking the event loop; from plain code it blocks."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        agent: Mapping[str, Any] | None = None,
        timeout: float = 300.0,
        poll: float = 1.0,
        http_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout < 0 or poll <= 0:
            raise ValueError("timeout must be at least 0 and poll above 0")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.agent = dict(agent) if agent is not None else None
        self.timeout = timeout
        self.poll = poll
        self.http_timeout = http_timeout
        self.clock = clock

    # -- the approver hook -------------------------------------------------------------------

    def __call__(self, decision: ToolDecision) -> bool | Awaitable[bool]:
        call = current_call.get()
        if call is None:
            raise ToolDenied(
                f"tool {decision.tool!r}: the reviewer approver was not given the call (agent, arguments); "
                "use acgs.guard.approval.call / acall",
                decision,
                outcome="rejected",
                code="tool_rejected",
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.wait(decision, call)
        return self.await_decision(decision, call)

    # -- what is sent and what is read -------------------------------------------------------

    def _headers(self, call: ActionCall) -> dict[str, str]:
        return self._agent_headers(call.agent_id)

    def _agent_headers(self, agent_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-ACGS-Identity": agent_id}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @staticmethod
    def _asking(response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return None
        try:
            record = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
        value = record.get("decision_id") if isinstance(record, dict) else None
        return value if isinstance(value, str) and value else None

    def asking_decision(self, request_id: str, agent_id: str) -> str | None:
        """The decision id that asked for request ``request_id``, as the service has it; None
        when it cannot be read (the resumed call is then checked as it comes)."""
        try:
            with httpx.Client(base_url=self.url, timeout=self.http_timeout, headers=self._agent_headers(agent_id)) as http:
                return self._asking(http.get(f"/evolution/requests/{request_id}"))
        except httpx.HTTPError:
            return None

    async def aasking_decision(self, request_id: str, agent_id: str) -> str | None:
        """``asking_decision`` for asyncio callers."""
        try:
            headers = self._agent_headers(agent_id)
            async with httpx.AsyncClient(base_url=self.url, timeout=self.http_timeout, headers=headers) as http:
                return self._asking(await http.get(f"/evolution/requests/{request_id}"))
        except httpx.HTTPError:
            return None

    def _body(self, decision: ToolDecision, call: ActionCall) -> bytes:
        """The call, never terms: the service decides those itself. The arguments are always
        sent (the service decides on them); it keeps only their digest when its decision
        redacts them."""
        args = arguments_json(call.arguments, call.tool)
        digest, canonical = _digest(args)
        if not canonical:
            raise ToolDenied(
                f"tool {decision.tool!r}: the arguments have no canonical JSON to submit for review",
                decision, outcome="rejected", code="tool_rejected",
            )  # fmt: skip
        claims = self.agent if self.agent is not None else call.agent
        body: dict[str, Any] = {
            "agent_id": call.agent_id,
            "tool": decision.tool,
            "decision_id": decision.decision_id,
            "arguments": orjson.Fragment(args),
            "arguments_sha256": digest,
            "session_id": call.session_id,
            # Exact JSON (a Decimal trust level as written), as the arguments are.
            "agent": orjson.Fragment(arguments_json(claims, call.tool)) if claims is not None else None,
            "constitutional_hash": decision.constitutional_hash,
        }
        return orjson.dumps({k: v for k, v in body.items() if v is not None})

    def _read(self, response: httpx.Response, what: str, decision: ToolDecision) -> dict[str, Any]:
        if response.status_code not in (200, 201):
            raise ApprovalServiceError(
                f"{what}: the evolution service answered {response.status_code}: {response.text[:300]}", decision
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ApprovalServiceError(f"{what}: the evolution service answered unreadable JSON", decision) from None
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str) or not isinstance(body.get("status"), str):
            raise ApprovalServiceError(f"{what}: the evolution service answered no request", decision)
        return body

    def _submitted(self, response: httpx.Response, decision: ToolDecision) -> dict[str, Any]:
        """The request the service holds; its refusal of the call (``action_denied``: its own
        decision denies it; ``approval_not_required``: its decision allows it, so there is no
        approval to give) as ``ToolDenied`` with the service's reasons."""
        if response.status_code in (403, 409):
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                body = None
            code = body.get("code") if isinstance(body, dict) else None
            if isinstance(body, dict) and code in ("action_denied", "approval_not_required"):
                reasons = _strings(body.get("reasons")) or [str(body.get("message", ""))]
                if code == "action_denied":
                    denied = dataclasses.replace(decision, outcome="deny", reasons=reasons)
                    raise ToolDenied(f"tool {decision.tool!r} denied by the evolution service: {'; '.join(reasons)}", denied)
                refused = ToolDenied(
                    f"tool {decision.tool!r}: the evolution service finds that the call needs no approval "
                    f"({'; '.join(reasons)}); no approval is given for it",
                    decision, outcome="rejected", code="tool_rejected",
                )  # fmt: skip
                refused.reasons = reasons
                raise refused
        return self._read(response, "submitting", decision)

    def _check_same(self, record: dict[str, Any], decision: ToolDecision, call: ActionCall) -> None:
        """A resumed request must be this call: the same agent, tool and arguments, asked for
        by the decision the resumed call names (when it names one)."""
        submission = record.get("submission") or {}
        digest, _ = _digest(arguments_json(call.arguments, call.tool))
        if (
            record.get("kind") != "action"
            or record.get("agent_id") != call.agent_id
            or submission.get("tool") != decision.tool
            or submission.get("arguments_sha256") != digest
            or (call.resumes is not None and record.get("decision_id") != call.resumes)
        ):
            raise ToolDenied(
                f"tool {decision.tool!r}: request {record.get('request_id')} is not an approval of this call",
                decision, outcome="rejected", code="tool_rejected",
            )  # fmt: skip

    def _pending(self, decision: ToolDecision, record: dict[str, Any]) -> ApprovalPending:
        """Still pending: the handle, with the service's terms (its reviewers and reasons). Its
        decision id is the one that asked for the approval (the request's), also when a resumed
        call is still waiting: a handle names the same call however often it is resumed."""
        asking = record.get("decision_id")
        if isinstance(asking, str) and asking and asking != decision.decision_id:
            decision = dataclasses.replace(decision, decision_id=asking)
        request_id = record["request_id"]
        reviewers = record.get("reviewers_required")
        approvals = record.get("approvals")
        deadline = record.get("review_deadline")
        terms = ""
        if isinstance(reviewers, int):
            got = len(approvals) if isinstance(approvals, list) else 0
            terms = f" ({got} of {reviewers} approvals{f', review by {deadline}' if deadline else ''})"
        pending = ApprovalPending(
            f"tool {decision.tool!r} waits for approval: request {request_id} is pending{terms}",
            decision,
            request_id=request_id,
            url=self.url,
        )
        reasons = _strings(record.get("reasons"))
        if reasons:
            pending.reasons = reasons
        if isinstance(reviewers, int):
            pending.approval = {"reviewers": reviewers, "review_deadline": deadline, "roles": _strings(record.get("roles"))}
        return pending

    def _settle(self, status: str, decision: ToolDecision, request_id: str) -> bool | None:
        """True to run, False to refuse, None to keep waiting."""
        if status == "approved":
            return True
        if status in REFUSED:
            return False
        if status == "deployed":
            raise ToolDenied(
                f"tool {decision.tool!r}: the approval of request {request_id} was already used",
                decision, outcome="rejected", code="tool_rejected",
            )  # fmt: skip
        return None

    def _claim_note(self, decision: ToolDecision) -> bytes:
        return orjson.dumps({"note": f"run by the guard under decision {decision.decision_id}"})

    # -- the conversation, once ----------------------------------------------------------------

    def _steps(self, decision: ToolDecision, call: ActionCall) -> _Steps:
        """Submits (or, resuming, re-checks) the request and waits for its verdict: True when
        approved and claimed, False when refused; raises ``ApprovalPending`` at the timeout."""
        deadline = self.clock() + (0.0 if call.resume else self.timeout)
        if call.resume:
            reply = yield _Send("GET", f"/evolution/requests/{call.resume}")
            assert reply is not None
            record = self._read(reply, "reading the request", decision)
            self._check_same(record, decision, call)
        else:
            reply = yield _Send("POST", "/evolution/actions", self._body(decision, call))
            assert reply is not None
            record = self._submitted(reply, decision)
        request_id = record["request_id"]
        while True:
            verdict = self._settle(record["status"], decision, request_id)
            if verdict is False:
                return False
            if verdict is True:
                claim = yield _Send("POST", f"/evolution/requests/{request_id}/deploy", self._claim_note(decision))
                return claim is not None and claim.status_code == 200
            if self.clock() >= deadline:
                raise self._pending(decision, record)
            yield _Sleep(min(self.poll, max(deadline - self.clock(), 0.0)))
            reply = yield _Send("GET", f"/evolution/requests/{request_id}")
            assert reply is not None
            record = self._read(reply, "reading the request", decision)

    def _unreachable(self, exc: httpx.HTTPError, decision: ToolDecision) -> ApprovalServiceError:
        return ApprovalServiceError(f"the evolution service is unreachable: {type(exc).__name__}: {exc}", decision)

    def wait(self, decision: ToolDecision, call: ActionCall) -> bool:
        """Submits (or, resuming, re-checks) the request and waits for its verdict."""
        steps = self._steps(decision, call)
        try:
            with httpx.Client(base_url=self.url, timeout=self.http_timeout, headers=self._headers(call)) as http:
                step = next(steps)
                while True:
                    if isinstance(step, _Sleep):
                        time.sleep(step.seconds)
                        step = steps.send(None)
                    else:
                        step = steps.send(http.request(step.method, step.path, content=step.content))
        except StopIteration as done:
            return bool(done.value)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, decision) from None

    async def await_decision(self, decision: ToolDecision, call: ActionCall) -> bool:
        """``wait`` for asyncio callers."""
        steps = self._steps(decision, call)
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=self.http_timeout, headers=self._headers(call)) as http:
                step = next(steps)
                while True:
                    if isinstance(step, _Sleep):
                        await asyncio.sleep(step.seconds)
                        step = steps.send(None)
                    else:
                        step = steps.send(await http.request(step.method, step.path, content=step.content))
        except StopIteration as done:
            return bool(done.value)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, decision) from None


# -- running a call through the guard with its approval ----------------------------------------


def _resumed(guard: Any, request_id: str, tool: str, arguments: Mapping[str, Any] | None, asking: str | None) -> ActionCall:
    return ActionCall(
        guard.agent_id, guard.session_id, tool, dict(arguments or {}), resume=request_id, agent=guard.agent_claims, resumes=asking
    )


def resume(
    guard: Any,
    pending: ApprovalPending | Mapping[str, Any] | str,
    tool: str,
    arguments: Mapping[str, Any] | None,
    run: Callable[[], Any],
    **options: Any,
) -> Any:
    """Runs a call that raised ``ApprovalPending`` once its request (``pending``: the exception,
    its ``handle()`` or the request id) is approved. The constitution decides the call afresh;
    when it still requires approval, the request is re-checked in place of a new one: approved,
    the call runs (once); rejected or expired, ``ToolDenied``; still pending, ``ApprovalPending``
    again. ``tool`` and ``arguments`` must be the call's (a request approves one call).

    The call is the one that asked for the approval, not another: the decision that asked
    (``ActionCall.resumes``, from the handle or, for a bare request id, the request) must be
    the request's, and a remote guard names it to the policy service, so that the service's
    record keeps one entry for the call (the first, which the review settles) and the call's
    own entry is not counted as a call made before it."""
    request_id = _request_id(pending)
    asking = _asking_decision(pending)
    approver = getattr(guard, "approver", None)
    if asking is None and isinstance(approver, ReviewApprover):
        asking = approver.asking_decision(request_id, guard.agent_id)
    with _calling(_resumed(guard, request_id, tool, arguments, asking)):
        return guard.call(tool, arguments, run, **options)


async def aresume(
    guard: Any,
    pending: ApprovalPending | Mapping[str, Any] | str,
    tool: str,
    arguments: Mapping[str, Any] | None,
    run: Callable[[], Awaitable[Any]],
    **options: Any,
) -> Any:
    """``resume`` for asyncio callers (``run`` is a coroutine function)."""
    request_id = _request_id(pending)
    asking = _asking_decision(pending)
    approver = getattr(guard, "approver", None)
    if asking is None and isinstance(approver, ReviewApprover):
        asking = await approver.aasking_decision(request_id, guard.agent_id)
    with _calling(_resumed(guard, request_id, tool, arguments, asking)):
        return await guard.acall(tool, arguments, run, **options)


__all__ = ["ActionCall", "ApprovalServiceError", "ReviewApprover", "aresume", "current_call", "resume"]
