"""``acgs.Guard``: every call of a wrapped tool function is decided by the constitution
(``acgs/tools/decision``) before it runs, refused, or held for approval, and audited once.

In process the decision is the embedded engine's, through the Rust core's admission (the
input's ``trusted`` member is the guard's own ``trusted`` facts or nothing, whatever the
arguments hold); remote, it is the policy service's, which fills ``trusted`` from the caller's
credential. Any fault on the way (an engine error, a malformed decision, an unreachable
service) is a deny with the fault as its reason: a tool never runs on a decision ACGS did not
make.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import orjson

from acgs import _acgs as core
from acgs.errors import AcgsError, ApprovalRequired, ToolDenied, ToolInputError, ToolOutputError
from acgs.guard import approval
from acgs.guard.audit import EVENT_TYPE, GuardAudit, sink_for
from acgs.guard.decision import ENTRYPOINT, ToolDecision, arguments_json, fault, read_decision, read_result_set
from acgs.guard.session import ALLOW, APPROVED, DEFAULT_HISTORY_MAX, DENY, PENDING, REJECTED, HistoryEntry, SessionHistory
from acgs.services.common.ids import DecisionIds

F = TypeVar("F", bound=Callable[..., Any])
#: What an approver is: given the decision, True (run it) or False (refuse it), or an awaitable
#: of either; raising refuses the call and the exception reaches the caller.
Approver = Callable[[ToolDecision], bool | Awaitable[bool]]
OutputCheck = Callable[[Any], Any]

_RESULTS = {ALLOW: "allowed", APPROVED: "approved"}
#: Decisions kept by call id (``decide(..., call_id=)``) until the call runs; the oldest go first.
OPEN_MAX = 1024


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: ``tools.history_max`` by bundle digest: reading an engine's data converts the whole
#: document, which would make opening a guard (one per MCP client session) cost ~0.5 ms.
_HISTORY_MAX_BY_BUNDLE: dict[str, int] = {}


def _history_max(engine: Any) -> int:
    digest = getattr(engine, "bundle_digest", None)
    if isinstance(digest, str) and digest in _HISTORY_MAX_BY_BUNDLE:
        return _HISTORY_MAX_BY_BUNDLE[digest]
    try:
        value = engine.data["acgs"]["constitution"]["tools"]["history_max"]
    except (KeyError, TypeError, AttributeError):
        value = DEFAULT_HISTORY_MAX
    limit = value if type(value) is int and value >= 0 else DEFAULT_HISTORY_MAX
    if isinstance(digest, str) and len(_HISTORY_MAX_BY_BUNDLE) < 64:
        _HISTORY_MAX_BY_BUNDLE[digest] = limit
    return limit


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 1000 else text[:999] + "\u2026"


#: The guarded call whose tool is running now (set around the tool function only).
_running: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("acgs_guard_running", default=None)

#: The reason a tool that does not run in the sandbox is denied when its decision says it must.
SANDBOX_REQUIRED = "the constitution requires this tool to run in the sandbox"


def running_decision() -> ToolDecision | None:
    """Inside a guarded tool while it runs: the decision it runs under (its id ties what the
    tool does elsewhere, e.g. a sandbox run, to the call); None elsewhere."""
    call = _running.get()
    return call.decision if call is not None else None


def note(key: str, value: Any) -> bool:
    """Inside a guarded tool while it runs: adds ``key: value`` (JSON-serialisable) to the
    call's audit event metadata (never over what the guard itself records there). False when
    no guarded tool is running."""
    call = _running.get()
    if call is None:
        return False
    if call.notes is None:
        call.notes = {}
    call.notes[key] = value
    return True


def _event(
    agent_id: str,
    session_id: str,
    decision: ToolDecision,
    reasons: tuple[str, ...],
    called_as: str,
    args_json: bytes | None,
    result_sha256: str | None,
    error: str | None,
    notes: dict[str, Any] | None,
    approved: bool | None,
    approver: str | None,
    asked: str | None,
    outcome: str,
    failed: bool,
    duration_ms: float,
) -> dict[str, Any]:
    """One guarded call's audit event (docs/agents.md, "The audit event"), built on the audit
    relay's thread from what the calling thread handed over (``Guard._audit``)."""
    metadata: dict[str, Any] = {
        "tool": decision.tool,
        "outcome": decision.outcome,
        "reasons": list(reasons),
        "duration_ms": duration_ms,
        "session_id": session_id,
        "idempotency_key": f"tool:{decision.decision_id}",
    }
    if decision.tool != called_as:
        metadata["called_as"] = called_as
    if args_json is not None:
        try:
            canonical = core.canonicalize_json(args_json)
            metadata["arguments_sha256"] = _sha256(canonical)
            if not decision.redact_arguments:
                metadata["arguments"] = orjson.loads(canonical)
        except Exception:  # noqa: BLE001 - numbers a double would alter: the bytes' digest
            metadata["arguments_sha256"] = _sha256(args_json)
            metadata["arguments_canonical"] = False
    if result_sha256 is not None:
        metadata["result_sha256"] = result_sha256
    if error is not None:
        metadata["error"] = error
    if decision.fault is not None:
        metadata["fault"] = True
    if notes:
        for key, value in notes.items():
            metadata.setdefault(key, value)
    if approved is not None and outcome in (APPROVED, REJECTED):
        # Settled by the caller (a framework's own approval), under this decision's id.
        metadata["approved_by" if outcome == APPROVED else "rejected_by"] = approver
        if asked is not None:
            metadata["approval_decision_id"] = asked
    result = "failed" if failed else _RESULTS.get(outcome, "denied" if outcome == DENY else outcome)
    if outcome == PENDING:
        result = "approval_required"
    event: dict[str, Any] = {
        "event_type": EVENT_TYPE,
        "agent_id": agent_id,
        "action": f"tool.{decision.tool}",
        "result": result,
        "decision_id": decision.decision_id,
        "metadata": metadata,
    }
    if decision.constitutional_hash:
        event["constitutional_hash"] = decision.constitutional_hash
    return event


class _Call:
    """One guarded call on its way: input, decision, what happened, its audit event."""

    __slots__ = (
        "approved", "approver", "args_json", "arguments", "asked", "decision", "entry", "error", "notes",
        "own", "result_sha256", "sandboxed", "started", "tool",
    )  # fmt: skip

    def __init__(self, tool: str) -> None:
        self.tool = tool
        #: Settled by the caller (a framework's own approval): True, False, or None (not settled).
        self.approved: bool | None = None
        self.approver: str | None = None
        #: The id of an earlier decision on this call that asked for approval, when the call was
        #: decided afresh because its session moved on.
        self.asked: str | None = None
        #: The tool runs in the ACGS sandbox (``sandboxed=True``): it honours a decision whose
        #: conditions say ``sandbox``.
        self.sandboxed = False
        #: What the running tool added to its audit event (``note``).
        self.notes: dict[str, Any] | None = None
        self.started = time.perf_counter()
        self.arguments: dict[str, Any] = {}
        self.args_json: bytes | None = None
        self.decision: ToolDecision | None = None
        self.entry: HistoryEntry | None = None
        #: In process, a resumed call's own entry (recorded when it asked for approval).
        self.own: HistoryEntry | None = None
        self.error: str | None = None
        self.result_sha256: str | None = None


class _Binder:
    """A function's arguments by parameter name, defaults applied: ``inspect.Signature.bind``,
    with a direct path for functions whose parameters are all plain (positional or keyword)."""

    __slots__ = ("defaults", "names", "plain", "sig")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.sig = inspect.signature(fn)
        params = list(self.sig.parameters.values())
        self.plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        self.names = tuple(p.name for p in params)
        self.defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self.names
        if self.plain and len(args) <= len(names):
            # Every parameter given, all by position or all by name in the signature's order.
            if not kwargs:
                if len(args) == len(names):
                    return dict(zip(names, args))
            elif not args and len(kwargs) == len(names) and tuple(kwargs) == names:
                return dict(kwargs)
            out = dict(zip(names, args))
            if not kwargs or all(k in names and k not in out for k in kwargs):
                out.update(kwargs)
                if len(out) < len(names):
                    for name in names:
                        if name not in out:
                            if name not in self.defaults:
                                break
                            out[name] = self.defaults[name]
                    else:
                        return {name: out[name] for name in names}
                else:
                    return {name: out[name] for name in names}
        # Anything else (and every error, raised as the bare function would raise it).
        bound = self.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if self.sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            else:
                arguments[name] = value
        return arguments


class Guard:
    """Guards tool functions of one agent in one session.

    ``engine``: an ``acgs.Engine`` (default: the constitution shipped with ACGS), or ``url``
    (and ``api_key``) of an ACGS policy service. ``agent_id`` names the agent in every
    decision and audit event; ``session_id`` (default: a new id) names the session whose
    history the guard keeps. ``audit``: an audit service URL, an ``acgs.audit.log.AuditLog``, a
    sink, or another guard's ``audit`` (shared); None: no audit. ``approver``: called with the decision when the constitution
    requires approval; without one such calls raise ``ApprovalRequired``. ``trusted``: in
    process, facts the embedding program vouches for (e.g. ``{"agent": {"trust_level": 0.9}}``);
    the remote service builds its own.
    """

    def __init__(
        self,
        engine: Any = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        agent_id: str,
        session_id: str | None = None,
        audit: Any = None,
        audit_api_key: str | None = None,
        audit_outbox: str | Path | None = None,
        approver: Approver | None = None,
        trusted: Mapping[str, Any] | None = None,
        history_max: int | None = None,
        timeout: float = 10.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError("agent_id must be a non-empty string")
        if engine is not None and url is not None:
            raise ValueError("give an engine or a policy service url, not both")
        self.agent_id = agent_id
        self._ids = DecisionIds()
        self.session_id = session_id if session_id is not None else f"session-{self._ids.next()}"
        self.url = url.rstrip("/") if url is not None else None
        self.approver = approver
        self.engine: Any = None
        if self.url is None:
            if engine is None:
                from acgs import Engine, default_bundle_path

                engine = Engine.load(default_bundle_path())
            self.engine = engine
        self._trusted = orjson.dumps(dict(trusted)) if trusted is not None else None
        #: What the embedding program vouches for about the agent, passed to a reviewing service
        #: as the agent's claim (the service's registry decides with authentication on).
        agent_facts = dict(trusted).get("agent") if trusted is not None else None
        self.agent_claims: Mapping[str, Any] | None = agent_facts if isinstance(agent_facts, Mapping) else None
        limit = history_max if history_max is not None else (_history_max(engine) if engine is not None else DEFAULT_HISTORY_MAX)
        self.history = SessionHistory(self.session_id, limit)
        self._agent_session = (
            b',"agent_id":' + orjson.dumps(self.agent_id) + b',"session":{"id":' + orjson.dumps(self.session_id)
        )  # fmt: skip
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._client = http_client
        self._aclient = async_http_client
        self._own_clients = http_client is None, async_http_client is None
        #: Decisions made by ``decide(..., call_id=)``, by call id: (tool, arguments JSON, the
        #: whole input, decision), until the call runs (``call(..., call_id=)``).
        self._open: collections.OrderedDict[str, tuple[str, bytes, bytes, ToolDecision]] = collections.OrderedDict()
        self._open_lock = threading.Lock()
        #: In process, the history entries of calls sent to approval, by decision id: a resumed
        #: call naming one (``ActionCall.resumes``) is that call, not another.
        self._asked: collections.OrderedDict[str, HistoryEntry] = collections.OrderedDict()
        #: Another guard's trail (``audit=other.audit``) is shared, not owned: one outbox and one
        #: relay thread for many sessions; its first owner closes it.
        self._own_audit = not isinstance(audit, GuardAudit)
        if isinstance(audit, GuardAudit) or audit is None:
            self.audit: GuardAudit | None = audit
        else:
            self.audit = GuardAudit(sink_for(audit, api_key=audit_api_key), outbox=audit_outbox)

    # -- the decision ------------------------------------------------------------------------

    def _input(self, call: _Call) -> bytes:
        """The decision input. In process it carries the session's history (the guard's own
        record, which the embedding program vouches for); to a policy service it names the
        session only: the service judges on its own record of the caller's calls, and a
        history sent along would be a claim it ignores (docs/security.md, Session history)."""
        assert call.args_json is not None
        head = b'{"tool":' + orjson.dumps(call.tool) + b',"arguments":' + call.args_json + self._agent_session
        resumed = approval.current_call.get()
        resumes = resumed.resumes if resumed is not None and resumed.tool == call.tool else None
        if self.url is not None:
            if resumes is not None:
                # A call resumed after approval names the decision that asked: the service's
                # record keeps one entry for the call (acgs.services.policy.sessions).
                return head + b',"resumes":' + orjson.dumps(resumes) + b"}}"
            return head + b"}}"
        if resumes is not None:
            with self._open_lock:
                own = self._asked.get(resumes)
            if own is not None and own.outcome in (PENDING, APPROVED, REJECTED) and self.history.holds(own):
                # Judged without its own entry, which stands for it (_after_decision).
                call.own = own
                return head + b',"history":' + self.history.json_without(own) + b"}}"
        return head + b',"history":' + self.history.json() + b"}}"

    def _seen(self, raw: bytes) -> bytes:
        """What a kept decision was made on: the input, and remote also the session's history
        as the guard knows it (the input names the session only), so a session that moved on
        is noticed either way."""
        return raw if self.url is None else raw + self.history.json()

    def _decide_local(self, raw: bytes, tool: str) -> ToolDecision:
        decision_id = self._ids.next()
        try:
            admitted = core.admit_input(raw, self._trusted)
            result_set = self.engine.evaluate_json(admitted, ENTRYPOINT)
        except AcgsError as exc:
            return fault(decision_id, tool, f"the tool decision failed: {exc.code}: {exc.message}")
        except Exception as exc:  # any fault in the policy path is a deny
            return fault(decision_id, tool, f"the tool decision failed: {_error_text(exc)}")
        return read_result_set(result_set, decision_id, tool)

    def _remote_body(self, raw: bytes) -> bytes:
        return b'{"input":' + raw + b"}"

    def _read_reply(self, response: httpx.Response, tool: str) -> ToolDecision:
        fallback = self._ids.next()
        if response.status_code != 200:
            return fault(fallback, tool, f"the policy service answered {response.status_code}: {response.text[:300]}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return fault(fallback, tool, "the policy service answered unreadable JSON")
        if not isinstance(body, dict):
            return fault(fallback, tool, "the policy service answered no decision")
        decision_id = body.get("decision_id")
        decision_id = decision_id if isinstance(decision_id, str) and decision_id else fallback
        if "result" not in body:
            return fault(decision_id, tool, "the constitution has no tool decision for this call (undefined)")
        return read_decision(body["result"], decision_id, tool)

    def _decide_remote(self, raw: bytes, tool: str) -> ToolDecision:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout)
        try:
            response = self._client.post(f"{self.url}/v1/data/{ENTRYPOINT}", content=self._remote_body(raw), headers=self._headers)
        except Exception as exc:  # unreachable, timed out, closed: a deny
            return fault(self._ids.next(), tool, f"the policy service is unreachable: {_error_text(exc)}")
        return self._read_reply(response, tool)

    async def _adecide_remote(self, raw: bytes, tool: str) -> ToolDecision:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._aclient.post(
                f"{self.url}/v1/data/{ENTRYPOINT}", content=self._remote_body(raw), headers=self._headers
            )
        except Exception as exc:  # unreachable, timed out, closed: a deny
            return fault(self._ids.next(), tool, f"the policy service is unreachable: {_error_text(exc)}")
        return self._read_reply(response, tool)

    # -- decisions kept for a call that runs later ---------------------------------------------

    def _kept(self, call_id: str | None, call: _Call, raw: bytes) -> ToolDecision | None:
        """The decision ``decide(..., call_id=)`` made on exactly this input, if any."""
        if call_id is None:
            return None
        with self._open_lock:
            held = self._open.get(call_id)
        return held[3] if held is not None and held[2] == self._seen(raw) else None

    def _keep(self, call_id: str | None, call: _Call, raw: bytes, decision: ToolDecision) -> None:
        if call_id is None:
            return
        assert call.args_json is not None
        with self._open_lock:
            self._open[call_id] = (call.tool, call.args_json, self._seen(raw), decision)
            self._open.move_to_end(call_id)
            while len(self._open) > OPEN_MAX:
                self._open.popitem(last=False)

    def _take(self, call_id: str | None, call: _Call, raw: bytes) -> ToolDecision | None:
        """For a call about to run: the decision kept under ``call_id`` when it was made on
        exactly this input (the same tool, arguments, agent and session history), which the
        call then runs under (no second evaluation, the same decision id). Kept for the same
        tool and arguments but a session that moved on since, it is not used (the call is
        decided afresh) and its id is remembered as the decision that asked for approval."""
        if call_id is None:
            return None
        with self._open_lock:
            held = self._open.pop(call_id, None)
        if held is None:
            return None
        tool, args_json, kept_raw, decision = held
        if kept_raw == self._seen(raw):
            return decision
        if tool == call.tool and args_json == call.args_json:
            call.asked = decision.decision_id
        return None

    def decide(self, tool: str, arguments: Mapping[str, Any] | None = None, *, call_id: str | None = None) -> ToolDecision:
        """The decision on calling ``tool`` with ``arguments`` now, without running or auditing
        anything and without adding to the guard's session history. (A policy service records
        every tool decision it makes in its own record of the caller's calls, asked-about ones
        too: an agent cannot ask without leaving a trace.)

        ``call_id``: the framework's id of this tool call. The decision is then kept until the
        call runs (``call(..., call_id=)``), which runs under it when nothing changed in
        between (one evaluation, one decision id from a framework's approval pause to the audit
        event); deciding the same call again meanwhile returns it without evaluating."""
        call = _Call(tool)
        call.args_json = arguments_json(arguments or {}, tool)
        raw = self._input(call)
        decision = self._kept(call_id, call, raw)
        if decision is None:
            decision = self._decide_remote(raw, tool) if self.url is not None else self._decide_local(raw, tool)
            self._keep(call_id, call, raw, decision)
        return decision

    async def adecide(self, tool: str, arguments: Mapping[str, Any] | None = None, *, call_id: str | None = None) -> ToolDecision:
        """``decide`` for asyncio callers."""
        call = _Call(tool)
        call.args_json = arguments_json(arguments or {}, tool)
        raw = self._input(call)
        decision = self._kept(call_id, call, raw)
        if decision is None:
            decision = await self._adecide_remote(raw, tool) if self.url is not None else self._decide_local(raw, tool)
            self._keep(call_id, call, raw, decision)
        return decision

    # -- one call ----------------------------------------------------------------------------

    def _prepare(self, call: _Call, binder: _Binder, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """Binds and converts the arguments (``ToolInputError`` when they have no JSON form);
        returns the decision input."""
        call.arguments = binder.bind(args, kwargs)
        call.args_json = arguments_json(call.arguments, call.tool)
        return self._input(call)

    def _refuse_input(self, call: _Call, exc: ToolInputError) -> ToolInputError:
        decision = fault(self._ids.next(), call.tool, exc.message)
        call.decision = decision
        exc.decision_id = decision.decision_id
        call.entry = self.history.record(decision.tool, DENY, [])
        self._audit(call, DENY)
        return exc

    def _after_decision(self, call: _Call) -> str:
        """Records the decided call in the session; what happens next: ``run``, ``deny`` or
        ``approval``."""
        decision = call.decision
        assert decision is not None
        if decision.sandbox and not call.sandboxed and decision.outcome != "deny":
            # A condition the tool cannot honour: it does not run (fail closed), approved or not.
            decision = call.decision = dataclasses.replace(
                decision, outcome="deny", reasons=[*decision.reasons, SANDBOX_REQUIRED], approval=None
            )
        if decision.outcome == "allow":
            call.entry = self.history.record(decision.tool, ALLOW, decision.labels)
            return "run"
        if call.own is not None:
            # A resumed call held for review (or now denied) is the call that asked: its first
            # entry stands for it and the review's outcome settles that one.
            call.entry = call.own
            return "deny" if decision.outcome == "deny" else "approval"
        if decision.outcome == "deny":
            call.entry = self.history.record(decision.tool, DENY, decision.labels)
            return "deny"
        call.entry = self.history.record(decision.tool, PENDING, decision.labels)
        with self._open_lock:
            self._asked[decision.decision_id] = call.entry
            while len(self._asked) > OPEN_MAX:
                self._asked.popitem(last=False)
        return "approval"

    def _denied(self, call: _Call) -> ToolDenied:
        decision = call.decision
        assert decision is not None
        self._audit(call, DENY)
        return ToolDenied(f"tool {decision.tool!r} denied: {'; '.join(decision.reasons)}", decision)

    def _approval_missing(self, call: _Call) -> ApprovalRequired:
        decision = call.decision
        assert decision is not None
        self._audit(call, PENDING)
        why = "; ".join(decision.reasons) or "the constitution requires approval"
        return ApprovalRequired(f"tool {decision.tool!r} requires approval: {why}", decision)

    def _approved(self, call: _Call, verdict: Any) -> bool:
        """Settles an approver's answer: True runs the call; anything but True refuses it."""
        assert call.entry is not None
        if verdict is True:
            self.history.settle(call.entry, APPROVED)
            return True
        self.history.settle(call.entry, REJECTED)
        return False

    def _rejected(self, call: _Call, error: BaseException | None = None) -> ToolDenied:
        decision = call.decision
        assert decision is not None and call.entry is not None
        self.history.settle(call.entry, REJECTED)
        if error is not None:
            call.error = _error_text(error)
        self._audit(call, REJECTED)
        if error is not None:
            reason = f"the approver failed: {call.error}"
        else:
            reason = f"{call.approver} rejected the call" if call.approver else "the approver rejected the call"
        return ToolDenied(f"tool {decision.tool!r} rejected: {reason}", decision, outcome=REJECTED, code="tool_rejected")

    def _finish(self, call: _Call, outcome: str, result: Any, check_output: OutputCheck | None, max_output_bytes: int | None) -> Any:
        """Output checks, the result's digest, the audit event; returns the result to hand back."""
        decision = call.decision
        assert decision is not None
        if self.audit is None and check_output is None and max_output_bytes is None:
            return result
        try:
            if check_output is not None:
                result = check_output(result)
            data: bytes | None = None
            try:
                data = core.canonical_json(result)
            except Exception:  # noqa: BLE001 - a result JSON cannot hold is digested by its repr
                if max_output_bytes is not None:
                    raise ToolOutputError(
                        f"tool {decision.tool!r}: the result has no JSON form to measure", decision.tool, decision.decision_id
                    ) from None
            if max_output_bytes is not None and data is not None and len(data) > max_output_bytes:
                raise ToolOutputError(
                    f"tool {decision.tool!r}: the result is {len(data)} bytes as JSON, more than {max_output_bytes}",
                    decision.tool, decision.decision_id,
                )  # fmt: skip
            call.result_sha256 = _sha256(data if data is not None else repr(result).encode("utf-8", "replace"))
        except BaseException as exc:
            call.error = _error_text(exc)
            self._audit(call, outcome, failed=True)
            raise
        self._audit(call, outcome)
        return result

    def _failed(self, call: _Call, outcome: str, exc: BaseException) -> None:
        call.error = _error_text(exc)
        self._audit(call, outcome, failed=True)

    # -- audit -------------------------------------------------------------------------------

    def _audit(self, call: _Call, outcome: str, *, failed: bool = False) -> None:
        """Hands the call's audit event to the trail: the calling thread takes only what may
        change after it returns (the duration, the call's fields; the arguments are immutable
        bytes) and the relay's thread builds the event from them (``_event``): the arguments'
        canonical digest, the metadata, the event itself. A file outbox commits it before this
        returns (``GuardAudit.record_call``)."""
        if self.audit is None:
            return
        assert call.decision is not None
        self.audit.record_call(
            _event,
            (
                self.agent_id, self.session_id, call.decision, tuple(call.decision.reasons), call.tool, call.args_json,
                call.result_sha256, call.error, dict(call.notes) if call.notes else None, call.approved, call.approver,
                call.asked, outcome, failed, round((time.perf_counter() - call.started) * 1000, 3),
            ),
        )  # fmt: skip

    # -- wrapping ----------------------------------------------------------------------------

    def tool(
        self,
        fn: F | None = None,
        /,
        name: str | None = None,
        *,
        check_output: OutputCheck | None = None,
        max_output_bytes: int | None = None,
        sandboxed: bool = False,
    ) -> Any:
        """Wraps a tool function (sync or async), as ``@guard.tool`` or ``@guard.tool(...)``.
        ``name``: the tool's name in the catalogue (default: the function's). ``check_output``
        gets the result and returns what to hand back (the result or a replacement) or raises;
        ``max_output_bytes`` caps the result's JSON size (``ToolOutputError`` past it).
        ``sandboxed``: the function runs its work in the ACGS sandbox (``acgs.guard.code``);
        a decision whose conditions require the sandbox denies any tool not marked so."""
        if isinstance(fn, str) and name is None:
            fn, name = None, fn
        if fn is None:
            return functools.partial(
                self.tool, name=name, check_output=check_output, max_output_bytes=max_output_bytes, sandboxed=sandboxed
            )
        return self._wrap(fn, fn.__name__ if name is None else name, check_output, max_output_bytes, sandboxed)

    def _settled_by_caller(self, call: _Call) -> str:
        """A ``require_approval`` call the caller already settled (``approved=``): runs as
        ``approved`` or is refused as ``rejected``; the guard's own approver is not asked."""
        if not self._approved(call, call.approved):
            raise self._rejected(call)
        return APPROVED

    def _gate(self, call: _Call) -> str:
        """After the decision (sync): the outcome the call runs under (``allow`` or
        ``approved``); raises ``ToolDenied`` / ``ApprovalRequired`` (audited) otherwise."""
        step = self._after_decision(call)
        if step == "deny":
            raise self._denied(call)
        if step == "run":
            if call.approved is False:
                raise self._rejected(call)  # the caller's no: never overridden by an allow
            return ALLOW
        if call.approved is not None:
            return self._settled_by_caller(call)
        if self.approver is None:
            raise self._approval_missing(call)
        assert call.decision is not None
        try:
            with self._calling(call):
                verdict = self.approver(call.decision)
            if inspect.isawaitable(verdict):
                # A sync call cannot wait on a coroutine approver: refused, not run.
                close = getattr(verdict, "close", None)
                if close is not None:
                    close()
                raise TypeError("an async approver needs an async tool")
        except ApprovalRequired:
            # Still waiting for reviewers (ApprovalPending): the call stays pending.
            self._audit(call, PENDING)
            raise
        except BaseException as exc:
            self._rejected(call, exc)
            raise
        if not self._approved(call, verdict):
            raise self._rejected(call)
        return APPROVED

    async def _agate(self, call: _Call) -> str:
        """``_gate`` for asyncio callers (the approver may be a coroutine function)."""
        step = self._after_decision(call)
        if step == "deny":
            raise self._denied(call)
        if step == "run":
            if call.approved is False:
                raise self._rejected(call)  # the caller's no: never overridden by an allow
            return ALLOW
        if call.approved is not None:
            return self._settled_by_caller(call)
        if self.approver is None:
            raise self._approval_missing(call)
        assert call.decision is not None
        try:
            with self._calling(call):
                verdict = self.approver(call.decision)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
        except ApprovalRequired:
            # Still waiting for reviewers (ApprovalPending): the call stays pending.
            self._audit(call, PENDING)
            raise
        except BaseException as exc:
            self._rejected(call, exc)
            raise
        if not self._approved(call, verdict):
            raise self._rejected(call)
        return APPROVED

    def _run(
        self,
        call: _Call,
        raw: bytes,
        run: Callable[[], Any],
        check_output: OutputCheck | None,
        max_output_bytes: int | None,
        call_id: str | None = None,
    ) -> Any:
        decision = self._take(call_id, call, raw) if call_id is not None else None
        if decision is None:
            decision = self._decide_remote(raw, call.tool) if self.url is not None else self._decide_local(raw, call.tool)
        call.decision = decision
        outcome = self._gate(call)
        token = _running.set(call)
        try:
            result = run()
        except BaseException as exc:
            self._failed(call, outcome, exc)
            raise
        finally:
            _running.reset(token)
        return self._finish(call, outcome, result, check_output, max_output_bytes)

    async def _arun(
        self,
        call: _Call,
        raw: bytes,
        run: Callable[[], Awaitable[Any]],
        check_output: OutputCheck | None,
        max_output_bytes: int | None,
        call_id: str | None = None,
    ) -> Any:
        decision = self._take(call_id, call, raw) if call_id is not None else None
        if decision is None:
            decision = await self._adecide_remote(raw, call.tool) if self.url is not None else self._decide_local(raw, call.tool)
        call.decision = decision
        outcome = await self._agate(call)
        token = _running.set(call)
        try:
            result = await run()
        except BaseException as exc:
            self._failed(call, outcome, exc)
            raise
        finally:
            _running.reset(token)
        return self._finish(call, outcome, result, check_output, max_output_bytes)

    def _named(
        self, tool: str, arguments: Mapping[str, Any] | None, approved: bool | None = None, approver: str | None = None
    ) -> tuple[_Call, bytes]:
        if approved is not None and type(approved) is not bool:
            raise TypeError("approved must be True, False or None")
        if approver is not None and not isinstance(approver, str):
            raise TypeError("approver must be a string or None")
        call = _Call(tool)
        call.approved, call.approver = approved, approver
        call.arguments = dict(arguments or {})
        try:
            call.args_json = arguments_json(call.arguments, tool)
        except ToolInputError as exc:
            raise self._refuse_input(call, exc) from None
        return call, self._input(call)

    @contextlib.contextmanager
    def _calling(self, call: _Call) -> Iterator[None]:
        """Makes the call (agent, session, tool, arguments) known to the approver
        (``acgs.guard.approval.current_call``), unless the caller already did (a resume)."""
        if approval.current_call.get() is not None:
            yield
            return
        token = approval.current_call.set(approval.ActionCall(self.agent_id, self.session_id, call.tool, call.arguments, agent=self.agent_claims))
        try:
            yield
        finally:
            approval.current_call.reset(token)

    def resume(self, pending: Any, tool: str, arguments: Mapping[str, Any] | None, run: Callable[[], Any], **options: Any) -> Any:
        """Runs a call that raised ``ApprovalPending`` once reviewers approved it (see
        ``acgs.guard.approval.resume``)."""
        return approval.resume(self, pending, tool, arguments, run, **options)

    async def aresume(
        self, pending: Any, tool: str, arguments: Mapping[str, Any] | None, run: Callable[[], Awaitable[Any]], **options: Any
    ) -> Any:
        """``resume`` for asyncio callers."""
        return await approval.aresume(self, pending, tool, arguments, run, **options)

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None,
        run: Callable[[], Any],
        *,
        approved: bool | None = None,
        approver: str | None = None,
        call_id: str | None = None,
        sandboxed: bool = False,
        check_output: OutputCheck | None = None,
        max_output_bytes: int | None = None,
    ) -> Any:
        """One guarded call of ``tool`` with ``arguments`` (as a model or an MCP client sent
        them) that is not a wrapped Python function: decides, records and audits it exactly as
        ``@guard.tool`` does, and calls ``run()`` only when the constitution allows it (or a
        reviewer approved); returns ``run()``'s result, raises ``ToolDenied`` /
        ``ApprovalRequired`` / ``ToolInputError`` otherwise. For framework adapters and the MCP
        proxy.

        ``approved``: for a call whose approval the caller already settled (a framework's own
        human-in-the-loop answered it): ``True`` runs a ``require_approval`` decision as
        ``approved``, ``False`` refuses it as ``rejected`` (``ToolDenied``, outcome
        ``rejected``), and the guard's approver is not asked. A ``deny`` stays a deny
        (``approved=True`` never runs a denied call) and an ``allow`` runs as allowed, unless
        ``approved=False``: a person's no is never overridden (the call is refused as
        ``rejected``, as when the session moved on between the pause and the answer and the
        call is now allowed). ``approver``:
        who settled it, as the caller knows them; the audit event's ``approved_by`` /
        ``rejected_by``. ``call_id``: the id under which ``decide(..., call_id=)`` decided this
        call earlier (e.g. the decision that asked for approval): the call runs under that
        decision and its id when its input is unchanged, else it is decided afresh.
        ``sandboxed``: ``run`` does its work in the ACGS sandbox (see ``tool``)."""
        c, raw = self._named(tool, arguments, approved, approver)
        c.sandboxed = sandboxed
        return self._run(c, raw, run, check_output, max_output_bytes, call_id)

    async def acall(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None,
        run: Callable[[], Awaitable[Any]],
        *,
        approved: bool | None = None,
        approver: str | None = None,
        call_id: str | None = None,
        sandboxed: bool = False,
        check_output: OutputCheck | None = None,
        max_output_bytes: int | None = None,
    ) -> Any:
        """``call`` for asyncio callers: ``run`` is a coroutine function."""
        c, raw = self._named(tool, arguments, approved, approver)
        c.sandboxed = sandboxed
        return await self._arun(c, raw, run, check_output, max_output_bytes, call_id)

    def _wrap(self, fn: F, tool: str, check_output: OutputCheck | None, max_output_bytes: int | None, sandboxed: bool = False) -> F:
        sig = _Binder(fn)
        guard = self

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def aguarded(*args: Any, **kwargs: Any) -> Any:
                call = _Call(tool)
                call.sandboxed = sandboxed
                try:
                    raw = guard._prepare(call, sig, args, kwargs)
                except ToolInputError as exc:
                    raise guard._refuse_input(call, exc) from None
                return await guard._arun(call, raw, lambda: fn(*args, **kwargs), check_output, max_output_bytes)

            return cast(F, aguarded)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            call = _Call(tool)
            call.sandboxed = sandboxed
            try:
                raw = guard._prepare(call, sig, args, kwargs)
            except ToolInputError as exc:
                raise guard._refuse_input(call, exc) from None
            return guard._run(call, raw, lambda: fn(*args, **kwargs), check_output, max_output_bytes)

        return cast(F, guarded)

    # -- lifecycle ---------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every audit event so far is delivered; True when they are (or there is
        no audit)."""
        return True if self.audit is None else self.audit.flush(timeout)

    async def aflush(self, timeout: float = 10.0) -> bool:
        return True if self.audit is None else await self.audit.aflush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Delivers pending audit events (up to ``timeout``), stops the relay, closes the HTTP
        client the guard opened."""
        if self.audit is not None:
            if self._own_audit:
                self.audit.close(timeout)
            else:
                self.audit.flush(timeout)
        if self._client is not None and self._own_clients[0]:
            self._client.close()

    async def aclose(self, timeout: float = 5.0) -> None:
        if self.audit is not None:
            await self.audit.aflush(timeout)
        self.close(timeout)
        if self._aclient is not None and self._own_clients[1]:
            await self._aclient.aclose()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
