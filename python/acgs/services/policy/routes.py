"""HTTP endpoints of the policy service: OPA's Data API, the seed's flat decision, batches,
OPA's default decision, health, metrics, and the read-only parts of OPA's management API.

Path resolution (see ``pipeline.Kind``):

- an entrypoint (``acgs/main/decision``) or a path inside its value
  (``acgs/main/decision/allow``) is evaluated;
- a package or the root (``acgs/main``, ``""``) gives the bundle's data under that path merged
  with the value of every entrypoint below it (rules that are not entrypoints are not compiled
  into a Wasm bundle, so they are absent);
- a pure data path (``acgs/constitution/thresholds``) gives that part of ``data.json``;
- anything else is undefined: 200 with no ``result``, as OPA answers.

Fail closed: an engine fault (timeout, trap, memory cap) on a ``.../decision`` entrypoint gives
a deny decision (HTTP 200, the fault in ``warning`` and in the decision's reasons); on a
``.../allow`` path it gives ``false``; on any other value an OPA error (HTTP 500). With no
bundle loaded the same answers carry HTTP 503. Never a 500 that carries an allow.

The tool decision (``acgs/tools/decision``), however it is reached, is judged on the service's
own record of the caller's session and recorded there before the answer (``sessions``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope

from acgs._acgs import exact_batch_inputs, exact_json
from acgs.errors import AcgsError, AuditError, ConstitutionalHashMismatch, InvalidInputError
from acgs.services.common.errors import (
    INTERNAL_ERROR,
    INVALID_OPERATION,
    INVALID_PARAMETER,
    RESOURCE_NOT_FOUND,
    UNDEFINED_DOCUMENT,
    ServiceError,
)
from acgs.services.common.http import (
    JSON,
    QueryFlags,
    Reply,
    exact_result,
    json_reply,
    json_response,
    load_wide,
    parse_json,
    query_flags,
    read_body,
)
from acgs.services.common.observability import note_decision
from acgs.services.policy import schemas
from acgs.services.policy.deps import PolicyService, ServiceDep
from acgs.services.policy.pipeline import (
    DECISION_META,
    MAIN_DECISION,
    BundleNotLoaded,
    Decided,
    DecisionPipeline,
    Kind,
    Role,
    Target,
    outcome_of,
    result_rows,
    walk,
)
from acgs.services.policy.sessions import SessionCall, decision_in, reaches_tools, session_id_of
from acgs.trust import owner_of
from acgs.trust.sessions import SessionHistoryUnavailable

router = APIRouter()

_UNSET: Any = object()
_INPUT_MISSING = {"code": "api_usage_warning", "message": "'input' key missing from the request"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorBody, "description": "Malformed JSON, wrong types, or a constitutional hash mismatch"},
    413: {"model": schemas.ErrorBody, "description": "Request body over the configured limit"},
    500: {"model": schemas.ErrorBody, "description": "An engine fault on a value that is not a decision"},
    503: {"model": schemas.ErrorBody, "description": "No policy bundle is loaded (decisions: a deny)"},
}


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"content": {JSON: {"schema": model.model_json_schema()}}, "required": False}}


def _rejected(exc: AcgsError) -> ServiceError:
    """Input the service refuses to evaluate: a 400, never a decision."""
    return ServiceError(400, INVALID_PARAMETER, exc.message, detail_code=exc.code)


def _unlogged(exc: AuditError) -> ServiceError:
    """``sync`` decision logs: a decision whose audit event was not acknowledged
    (``DecisionLogUnavailable``, the only error ``offer`` raises) is never answered; the client
    may ask again."""
    return ServiceError(503, INTERNAL_ERROR, exc.message, detail_code=exc.code)


def _loads(raw: bytes, what: str = "request body") -> Any:
    """The body as Python values, for the route's own checks (its shape, the constitutional
    hash). orjson refuses a number beyond a double (``1e400``) that JSON allows and the policy
    reads exactly, so such a body is read by the standard library instead (the number becomes
    ``inf`` here only; ``_exact`` gives the policy its text, and refuses what is not JSON)."""
    try:
        return load_wide(raw)
    except (ValueError, RecursionError):
        return parse_json(raw, what)  # the 400 with orjson's account of what is wrong


def _exact(raw: bytes, member: str | None = None, what: str = "request body") -> bytes | None:
    """The input document in a request's bytes (or its ``member``), re-written by the core with
    every number exactly as the client spelt it: a Python float would round
    ``10.000000000000000001`` to ``10.0`` and a value past a limit would be judged within it.
    An object that repeats a key is refused (400), since parsers disagree on which one wins."""
    try:
        return exact_json(raw, member)
    except InvalidInputError as exc:
        raise ServiceError(400, INVALID_PARAMETER, f"{what}: {exc.message}", detail_code=exc.code) from None


def _fault_error(fault: AcgsError) -> ServiceError:
    status = 503 if isinstance(fault, BundleNotLoaded) else 500
    return ServiceError(status, INTERNAL_ERROR, fault.message, detail_code=fault.code)


def _input_of_body(raw_body: bytes) -> tuple[dict[str, Any], bool]:
    """The request object of a Data API POST, and whether it had any body at all."""
    if not raw_body or raw_body.isspace():
        return {}, False
    body = _loads(raw_body)
    if type(body) is not dict:
        raise ServiceError.bad_request('request body must be a JSON object, e.g. {"input": {...}}')
    return body, True


class _Answer:
    """One Data API answer being put together."""

    __slots__ = ("cache_hit", "defined", "eval_ns", "exact", "outcome", "result", "status", "value", "warning")

    def __init__(self) -> None:
        self.defined = False
        self.result: Any = None
        #: An evaluated entrypoint's whole value (``result`` is the part the path names).
        self.value: Any = None
        #: The result as the evaluator wrote it, when a double could change one of its numbers
        #: (``exact_result``): the reply carries this, the decision log the Python value.
        self.exact: orjson.Fragment | None = None
        self.status = 200
        self.warning: dict[str, str] | None = None
        self.outcome: str | None = None
        self.cache_hit = False
        self.eval_ns = 0


async def _facts(service: PolicyService, scope: Scope, target: Target, n: int = 1) -> list[bytes] | None:
    """The ``trusted`` documents (acgs.trust) of ``n`` evaluations of ``target`` for this
    caller, each counted as one decision; None when the target is not evaluated."""
    facts = service.facts
    if facts is None or target.kind not in (Kind.ENTRYPOINT, Kind.DOCUMENT):
        return None
    return await facts.for_request("decision", scope, n)


async def _evaluate_target(
    service: PolicyService,
    target: Target,
    raw: bytes | None,
    value: Any,
    answer: _Answer,
    count_hits: bool = False,
    trusted: bytes | None = None,
) -> None:
    """Fills ``answer`` for one target and input, failing closed as the module docstring says.
    ``count_hits`` finds out whether L1 answered (for ``?metrics``), at the price of two reads
    of the engine's counters. ``trusted``: the caller's facts, in place of the input's own."""
    pipeline = service.pipeline
    kind = target.kind
    if kind is Kind.ENTRYPOINT:
        assert target.entrypoint is not None
        if (
            target.entrypoint == MAIN_DECISION
            and not target.rest
            and pipeline.native_decision
            and type(value) is dict
            and raw is not None
        ):
            await _evaluate_main_decision(service, target, raw, value, answer, trusted)
            return
        try:
            if value is not _UNSET:
                pipeline.check_hash(value)
            hits = pipeline.l1_hits() if count_hits else 0
            started = time.perf_counter_ns()
            result_set = await pipeline.evaluate_async(target.entrypoint, raw, trusted)
            answer.eval_ns = time.perf_counter_ns() - started
            if count_hits:
                answer.cache_hit = pipeline.l1_hits() > hits
        except (ConstitutionalHashMismatch, InvalidInputError) as exc:
            raise _rejected(exc) from None
        except AcgsError as fault:
            _fail_closed(service, target, fault, answer)
            return
        try:
            rows = result_rows(result_set)
        except AcgsError as fault:
            _fail_closed(service, target, fault, answer)
            return
        if rows:
            answer.defined, answer.result = True, rows[0]["result"]
            answer.value = answer.result
            if target.rest:
                answer.defined, answer.result = walk(answer.result, target.rest)
            else:
                answer.exact = exact_result(result_set)
        answer.outcome = outcome_of(answer.result, answer.defined)
    elif kind is Kind.DOCUMENT:
        if not pipeline.loaded:
            raise _fault_error(pipeline.load_error or BundleNotLoaded("no policy bundle is loaded"))
        try:
            if value is not _UNSET:
                pipeline.check_hash(value)
            # Every entrypoint under the path is evaluated: off the event loop.
            answer.defined, answer.result = True, await pipeline.off_loop(pipeline.document, target, raw, trusted)
        except (ConstitutionalHashMismatch, InvalidInputError) as exc:
            raise _rejected(exc) from None
        except AcgsError as fault:
            raise _fault_error(fault) from None
    elif kind is Kind.DATA:
        answer.defined, answer.result = walk(pipeline.data, target.rest)
    else:
        answer.outcome = "undefined"


async def _evaluate_main_decision(
    service: PolicyService, target: Target, raw: bytes, value: dict[str, Any], answer: _Answer, trusted: bytes | None
) -> None:
    """The constitution's decision in OPA's shape, through the same pipeline as the flat answer
    (L1, L2, fast path): the result is the decision without the keys the pipeline adds."""
    started = time.perf_counter_ns()
    try:
        decided = await service.pipeline.decide(MAIN_DECISION, raw, value, trusted)
    except (ConstitutionalHashMismatch, InvalidInputError) as exc:
        raise _rejected(exc) from None
    answer.eval_ns = time.perf_counter_ns() - started
    decision = decided.decision
    answer.cache_hit = bool(decision.get("cache_hit"))
    for key in DECISION_META:
        decision.pop(key, None)
    answer.defined, answer.result, answer.status = True, decision, decided.status
    if decided.fault is not None:
        service.metrics.error(decided.fault.code)
        answer.outcome = "error"
        answer.warning = {"code": decided.fault.code, "message": decided.fault.message}
    else:
        answer.outcome = outcome_of(decision)


def _fail_closed(service: PolicyService, target: Target, fault: AcgsError, answer: _Answer) -> None:
    pipeline = service.pipeline
    service.metrics.error(fault.code)
    service.metrics.outcomes["error"] += 1
    if target.role is Role.VALUE:
        raise _fault_error(fault)
    answer.defined = True
    answer.result = pipeline.deny(fault) if target.role is Role.DECISION else False
    answer.warning = {"code": fault.code, "message": fault.message}
    if isinstance(fault, BundleNotLoaded):
        answer.status = 503


def _session_call(service: PolicyService, scope: Scope, target: Target, value: Any) -> SessionCall | None:
    """The session of an evaluation that reaches the tool decision; None for any other."""
    ledger = service.sessions
    if ledger is None or not reaches_tools(target):
        return None
    return SessionCall(ledger, owner_of(scope), session_id_of(value), value)


async def _decide_in_session(
    service: PolicyService,
    call: SessionCall,
    target: Target,
    raw: bytes | None,
    value: Any,
    answer: _Answer,
    trusted: bytes | None,
    decision_id: str,
    count_hits: bool = False,
) -> None:
    """``_evaluate_target`` for the tool decision: the service's record of the session goes
    into the facts, and the decision into the record under ``decision_id``, before any answer.
    A ledger that cannot be read or written fails closed."""
    try:
        trusted = await call.attach(trusted)
    except SessionHistoryUnavailable as fault:
        _fail_closed(service, target, fault, answer)
        return
    await _evaluate_target(service, target, raw, value, answer, count_hits, trusted)
    decision = answer.value if target.kind is Kind.ENTRYPOINT else decision_in(target, answer.result)
    try:
        await call.record(decision_id, decision)
    except SessionHistoryUnavailable as fault:
        # Unrecorded, the call would be missing from the history later calls are judged on.
        answer.exact, answer.outcome, answer.warning = None, None, None
        _fail_closed(service, target, fault, answer)


def _respond(
    service: PolicyService, answer: _Answer, flags: QueryFlags, started: int, endpoint: str, decision_id: str | None = None
) -> Reply:
    decision_id = decision_id or service.pipeline.next_decision_id()
    note_decision(decision_id)
    out: dict[str, Any] = {"decision_id": decision_id}
    if answer.defined:
        out["result"] = answer.result if answer.exact is None else answer.exact
    if answer.warning is not None:
        out["warning"] = answer.warning
    if flags.provenance:
        out["provenance"] = service.provenance()
    elapsed = time.perf_counter_ns() - started
    if flags.metrics:
        out["metrics"] = {
            "timer_server_handler_ns": elapsed,
            "timer_rego_query_eval_ns": answer.eval_ns,
            "counter_server_query_cache_hit": int(answer.cache_hit),
        }
    metrics = service.metrics
    metrics.durations[endpoint].observe(elapsed / 1e9)
    if answer.outcome is not None:
        metrics.outcomes[answer.outcome] += 1
    return json_reply(out, answer.status, flags.pretty)


async def _respond_logged(
    service: PolicyService,
    target: Target,
    path: str,
    raw: bytes | None,
    answer: _Answer,
    flags: QueryFlags,
    started: int,
    decision_id: str | None = None,
) -> Reply:
    """``_respond`` for the Data API, with a decision log entry when an entrypoint was
    evaluated on an input and decision logs are on. ``decision_id``: the one already given
    (the tool decision's, recorded in its session)."""
    dlog = service.decision_log
    if dlog is None or raw is None or target.kind is not Kind.ENTRYPOINT:
        return _respond(service, answer, flags, started, "data", decision_id)
    decision_id = decision_id or service.pipeline.next_decision_id()
    reply = _respond(service, answer, flags, started, "data", decision_id)
    try:
        await dlog.offer(decision_id, path, raw, answer.result, answer.outcome)
    except AuditError as exc:
        raise _unlogged(exc) from None
    return reply


async def _decide_flat(
    service: PolicyService,
    scope: Scope,
    target: Target,
    raw_body: bytes,
    body: dict[str, Any],
    flags: QueryFlags,
    started: int,
) -> Reply:
    """The seed's call: a bare body on a decision entrypoint, answered flat."""
    assert target.entrypoint is not None
    facts = await _facts(service, scope, target)
    trusted = facts[0] if facts else None
    call = _session_call(service, scope, target, body)
    decided: Decided | None = None
    if call is not None:
        try:
            trusted = await call.attach(trusted)
        except SessionHistoryUnavailable as fault:
            decided = _flat_deny(service.pipeline, fault)
    if decided is None:
        try:
            decided = await service.pipeline.decide(target.entrypoint, raw_body, body, trusted)
        except (ConstitutionalHashMismatch, InvalidInputError) as exc:
            raise _rejected(exc) from None
        if call is not None:
            decision_id = decided.decision["decision_id"]
            try:
                await call.record(decision_id, None if decided.fault is not None else decided.decision)
            except SessionHistoryUnavailable as fault:
                decided = _flat_deny(service.pipeline, fault, decision_id)
    note_decision(decided.decision["decision_id"])
    metrics = service.metrics
    metrics.durations["decision"].observe((time.perf_counter_ns() - started) / 1e9)
    if decided.fault is not None:
        metrics.error(decided.fault.code)
        metrics.outcomes["error"] += 1
    else:
        metrics.outcomes["allow" if decided.decision["allow"] else "deny"] += 1
    dlog = service.decision_log
    if dlog is not None:
        try:
            await dlog.offer(decided.decision["decision_id"], target.entrypoint, raw_body, dict(decided.decision), None)
        except AuditError as exc:
            raise _unlogged(exc) from None
    if flags.provenance:
        decided.decision["provenance"] = service.provenance()
    return json_reply(decided.decision, decided.status, flags.pretty)


def _flat_deny(pipeline: DecisionPipeline, fault: AcgsError, decision_id: str | None = None) -> Decided:
    """The flat fail-closed deny of a decision that could not be made in its session."""
    decision = pipeline.deny(fault)
    decision["decision_id"] = decision_id or pipeline.next_decision_id()
    decision["bundle_digest"] = pipeline.bundle_digest
    decision["cache_hit"] = False
    decision["fast_path"] = False
    decision["evaluation_time_ms"] = 0.0
    return Decided(200, decision, fault)


# -- Data API --------------------------------------------------------------------------------


@router.post(
    "/v1/data/{path:path}",
    tags=["data"],
    summary="Evaluate a document with an input (OPA Data API); a bare body on a decision gets the seed's flat answer",
    responses={200: {"model": schemas.DataResponse | schemas.DecisionResponse}, **_ERRORS},
    openapi_extra=_body_schema(schemas.DataRequest),
)
async def post_data(request: Request, path: str) -> Response:
    return (await data_post(request.app.state.policy, request.scope, request.receive, path)).response()


async def data_post(service: PolicyService, scope: Scope, receive: Receive, path: str) -> Reply:
    started = time.perf_counter_ns()
    flags = query_flags(scope)
    raw_body = await read_body(scope, receive, service.settings.max_body_bytes)
    body, had_body = _input_of_body(raw_body)
    target = service.pipeline.resolve(path)
    answer = _Answer()
    if "input" in body:
        value = body["input"]
        raw: bytes | None = _exact(raw_body, "input")
    elif target.role is Role.DECISION and ("action" in body or "type" in body or "constitutional_hash" in body):
        return await _decide_flat(service, scope, target, raw_body, body, flags, started)
    else:
        value, raw = _UNSET, None
        if had_body:
            answer.warning = _INPUT_MISSING
            # A body that names a constitutional hash is held to it even when it is not an input.
            try:
                service.pipeline.check_hash(body)
            except (ConstitutionalHashMismatch, InvalidInputError) as exc:
                raise _rejected(exc) from None
    return await _answer_data(service, scope, target, path, raw, value, answer, flags, started)


async def _answer_data(
    service: PolicyService,
    scope: Scope,
    target: Target,
    path: str,
    raw: bytes | None,
    value: Any,
    answer: _Answer,
    flags: QueryFlags,
    started: int,
) -> Reply:
    """Evaluates a Data API request (POST or GET) and answers it."""
    facts = await _facts(service, scope, target)
    trusted = facts[0] if facts else None
    call = _session_call(service, scope, target, value)
    if call is None:
        await _evaluate_target(service, target, raw, value, answer, flags.metrics, trusted)
        return await _respond_logged(service, target, path, raw, answer, flags, started)
    decision_id = service.pipeline.next_decision_id()
    await _decide_in_session(service, call, target, raw, value, answer, trusted, decision_id, flags.metrics)
    return await _respond_logged(service, target, path, raw, answer, flags, started, decision_id)


@router.post("/v1/data", include_in_schema=False)
async def post_data_root(request: Request) -> Response:
    return (await data_post(request.app.state.policy, request.scope, request.receive, "")).response()


@router.get(
    "/v1/data/{path:path}",
    tags=["data"],
    summary="Read a document (OPA Data API); ?input=<JSON> supplies an input",
    responses={200: {"model": schemas.DataResponse}, **_ERRORS},
)
async def get_data(request: Request, path: str) -> Response:
    return (await data_get(request.app.state.policy, request.scope, request.receive, path)).response()


async def data_get(service: PolicyService, scope: Scope, receive: Receive, path: str) -> Reply:
    started = time.perf_counter_ns()
    flags = query_flags(scope)
    target = service.pipeline.resolve(path)
    value: Any = _UNSET
    raw: bytes | None = None
    if flags.input is not None:
        text = flags.input.encode()
        value = _loads(text, "the input parameter")
        raw = _exact(text, what="the input parameter")
    return await _answer_data(service, scope, target, path, raw, value, _Answer(), flags, started)


@router.get("/v1/data", include_in_schema=False)
async def get_data_root(request: Request) -> Response:
    return (await data_get(request.app.state.policy, request.scope, request.receive, "")).response()


@router.post(
    "/",
    tags=["data"],
    summary="OPA's default decision: the raw body is the input, the answer the bare value (404 if undefined)",
    responses={404: {"model": schemas.ErrorBody, "description": "The default decision is undefined"}, **_ERRORS},
)
async def default_decision(request: Request) -> Response:
    return (await default_post(request.app.state.policy, request.scope, request.receive)).response()


async def default_post(service: PolicyService, scope: Scope, receive: Receive) -> Reply:
    started = time.perf_counter_ns()
    flags = query_flags(scope)
    raw_body = await read_body(scope, receive, service.settings.max_body_bytes)
    value: Any = _UNSET
    raw: bytes | None = None
    if raw_body.strip():
        value = _loads(raw_body)
        raw = _exact(raw_body)
    name = service.settings.default_decision
    target = service.pipeline.resolve(name)
    answer = _Answer()
    if target.kind is Kind.ENTRYPOINT or not service.pipeline.loaded:
        facts = await _facts(service, scope, target)
        trusted = facts[0] if facts else None
        call = _session_call(service, scope, target, value)
        if call is None:
            await _evaluate_target(service, target, raw, value, answer, trusted=trusted)
        else:
            decision_id = service.pipeline.next_decision_id()
            await _decide_in_session(service, call, target, raw, value, answer, trusted, decision_id)
    service.metrics.durations["default"].observe((time.perf_counter_ns() - started) / 1e9)
    if answer.outcome is not None:
        service.metrics.outcomes[answer.outcome] += 1
    if not answer.defined:
        raise ServiceError(
            404, UNDEFINED_DOCUMENT, f"document missing or undefined: data.{name.replace('/', '.')}"
        )
    return json_reply(answer.result if answer.exact is None else answer.exact, answer.status, flags.pretty)


# -- batch -----------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: Any) -> Any:
    """Deep merge for ``common_input``: the input's own values win."""
    if type(over) is not dict:
        return over
    out = dict(base)
    for key, value in over.items():
        mine = out.get(key)
        out[key] = _merge(mine, value) if type(mine) is dict and type(value) is dict else value
    return out


def _item_error(err: ServiceError) -> dict[str, Any]:
    return {**err.body(), "http_status_code": str(err.status)}


@router.post(
    "/v1/batch/data/{path:path}",
    tags=["data"],
    summary="Evaluate many inputs in one request (OPA Enterprise's batch API; an array of inputs is answered in order)",
    responses={200: {"model": schemas.BatchResponse}, 207: {"model": schemas.BatchResponse}, **_ERRORS},
    openapi_extra=_body_schema(schemas.BatchRequest),
)
async def post_batch(request: Request, path: str) -> Response:
    return (await batch_post(request.app.state.policy, request.scope, request.receive, path)).response()


async def batch_post(service: PolicyService, scope: Scope, receive: Receive, path: str) -> Reply:
    started = time.perf_counter_ns()
    pipeline = service.pipeline
    flags = query_flags(scope)
    raw_body = await read_body(scope, receive, service.settings.max_body_bytes)
    body = _loads(raw_body)
    if type(body) is not dict or "inputs" not in body:
        raise ServiceError.bad_request('batch body must be an object with "inputs" (an object or an array)')
    inputs = body["inputs"]
    common = body.get("common_input")
    if common is not None and type(common) is not dict:
        raise ServiceError.bad_request('"common_input" must be an object')
    if type(inputs) is dict:
        keys: list[str] | None = list(inputs)
        values = list(inputs.values())
    elif type(inputs) is list:
        keys, values = None, inputs
    else:
        raise ServiceError.bad_request('"inputs" must be an object or an array')
    if len(values) > service.settings.max_batch:
        raise ServiceError(
            413, INVALID_PARAMETER, f"batch has {len(values)} inputs, the limit is {service.settings.max_batch}"
        )
    # The inputs as the policy gets them: cut from the body by the core, numbers as spelt,
    # common_input merged under each (``values`` below are for the hash check only).
    try:
        exact_keys, exact_raws = exact_batch_inputs(raw_body)
    except InvalidInputError as exc:
        raise ServiceError(400, INVALID_PARAMETER, f"request body: {exc.message}", detail_code=exc.code) from None
    if keys is None:
        raws = exact_raws
    else:
        by_key = dict(zip(exact_keys or [], exact_raws, strict=True))
        raws = [by_key[k] for k in keys]
    if common:
        values = [_merge(common, v) for v in values]
    target = pipeline.resolve(path)
    entries: list[dict[str, Any]] = [{} for _ in values]
    failed = False
    runnable: list[int] = []
    for i, value in enumerate(values):
        try:
            pipeline.check_hash(value)
            runnable.append(i)
        except (ConstitutionalHashMismatch, InvalidInputError) as exc:
            entries[i] = _item_error(_rejected(exc))
            failed = True
    logged: list[tuple[str, bytes, Any, str | None]] | None = [] if service.decision_log is not None else None
    # Each input of a batch is one decision for the caller's counters.
    facts = await _facts(service, scope, target, len(runnable)) if runnable else None
    if runnable and service.sessions is not None and reaches_tools(target):
        # One input after the other: each is judged on a history holding the ones before it.
        for n, i in enumerate(runnable):
            answer = _Answer()
            call = _session_call(service, scope, target, values[i])
            assert call is not None
            decision_id = pipeline.next_decision_id()
            try:
                await _decide_in_session(
                    service, call, target, raws[i], values[i], answer, facts[n] if facts else None, decision_id
                )
            except ServiceError as err:
                entries[i] = _item_error(err)
                failed = True
                continue
            if answer.outcome is not None:
                service.metrics.outcomes[answer.outcome] += 1
            entries[i] = _entry(pipeline, answer, decision_id)
            if logged is not None and target.kind is Kind.ENTRYPOINT:
                logged.append((decision_id, raws[i], answer.result, answer.outcome))
    elif target.kind is Kind.ENTRYPOINT and target.entrypoint is not None and runnable:
        results = await pipeline.evaluate_batch(target.entrypoint, [raws[i] for i in runnable], facts)
        for i, result in zip(runnable, results, strict=True):
            answer = _Answer()
            rows: list[Any] = []
            if not isinstance(result, AcgsError):
                try:
                    rows = result_rows(result)
                except AcgsError as fault:
                    result = fault
            if isinstance(result, AcgsError):
                if isinstance(result, InvalidInputError):
                    entries[i] = _item_error(_rejected(result))
                    failed = True
                    continue
                try:
                    _fail_closed(service, target, result, answer)
                except ServiceError as err:
                    entries[i] = _item_error(err)
                    failed = True
                    continue
            else:
                if rows:
                    answer.defined, answer.result = walk(rows[0]["result"], target.rest)
                    if not target.rest:
                        answer.exact = exact_result(result)
                answer.outcome = outcome_of(answer.result, answer.defined)
                service.metrics.outcomes[answer.outcome] += 1
            entries[i] = _entry(pipeline, answer)
            if logged is not None:
                logged.append((entries[i]["decision_id"], raws[i], answer.result, answer.outcome))
    else:
        for n, i in enumerate(runnable):
            answer = _Answer()
            value = values[i]
            try:
                await _evaluate_target(service, target, raws[i], value, answer, trusted=facts[n] if facts else None)
            except ServiceError as err:
                entries[i] = _item_error(err)
                failed = True
                continue
            entries[i] = _entry(pipeline, answer)
    if logged and service.decision_log is not None:
        try:
            await service.decision_log.offer_many(
                [(decision_id, path, raw_item, result_value, outcome) for decision_id, raw_item, result_value, outcome in logged]
            )
        except AuditError as exc:
            raise _unlogged(exc) from None
    out: dict[str, Any] = {"batch_decision_id": pipeline.next_decision_id()}
    note_decision(out["batch_decision_id"])
    if keys is None:
        out["results"] = entries
    else:
        out["responses"] = dict(zip(keys, entries, strict=True))
    if flags.provenance:
        out["provenance"] = service.provenance()
    service.metrics.durations["batch"].observe((time.perf_counter_ns() - started) / 1e9)
    return json_reply(out, 207 if failed else 200, flags.pretty)


def _entry(pipeline: DecisionPipeline, answer: _Answer, decision_id: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"decision_id": decision_id or pipeline.next_decision_id()}
    if answer.defined:
        entry["result"] = answer.result if answer.exact is None else answer.exact
    if answer.warning is not None:
        entry["warning"] = answer.warning
    return entry


# -- health, metrics, management --------------------------------------------------------------


@router.get(
    "/health",
    tags=["operations"],
    summary="Bundle loaded, constitutional hash, bundle digest; 503 when no bundle is loaded",
    responses={200: {"model": schemas.Health}, 503: {"model": schemas.Health}},
)
async def health(service: ServiceDep) -> Response:
    # OPA's ?bundles and ?plugins ask the same here: one bundle, no plugins.
    pipeline = service.pipeline
    l2 = pipeline.l2
    body: dict[str, Any] = {
        "status": "ok" if pipeline.loaded else "unavailable",
        "bundle_loaded": pipeline.loaded,
        "bundle_digest": pipeline.bundle_digest or None,
        "revision": pipeline.revision if pipeline.loaded else None,
        "constitutional_hash": pipeline.constitutional_hash,
        "entrypoints": pipeline.entrypoints,
        "evaluator": pipeline.evaluator,
        "l2": "disabled" if l2 is None else ("up" if l2.available else "down"),
    }
    if pipeline.plan_error is not None:
        body["plan_error"] = pipeline.plan_error
    fault = pipeline.load_error
    if fault is not None:
        body["error"] = fault.message
    return json_response(body, 200 if pipeline.loaded else 503)


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/policies", tags=["management"], summary="OPA's policy list: empty, a Wasm bundle carries no Rego modules")
async def list_policies() -> Response:
    return json_response({"result": []})


@router.get("/v1/policies/{policy_id:path}", tags=["management"], include_in_schema=False)
async def get_policy(policy_id: str) -> Response:
    if not policy_id:
        return json_response({"result": []})
    raise ServiceError(404, RESOURCE_NOT_FOUND, f"storage_not_found_error: policy id {policy_id!r}")


@router.get("/v1/config", tags=["management"], summary="The service's settings (credentials masked)")
async def config(service: ServiceDep) -> Response:
    return json_response({"result": service.settings.public()})


@router.get("/v1/status", tags=["management"], summary="OPA-style status: the active bundle")
async def status(service: ServiceDep) -> Response:
    pipeline = service.pipeline
    bundle: dict[str, Any] = {"name": "acgs", "active_revision": pipeline.revision, "bundle_digest": pipeline.bundle_digest}
    if not pipeline.loaded and pipeline.load_error is not None:
        bundle["errors"] = [{"code": pipeline.load_error.code, "message": pipeline.load_error.message}]
    state = "OK" if pipeline.loaded else "NOT_READY"
    return json_response({"result": {"bundles": {"acgs": bundle}, "plugins": {"bundle": {"state": state}}}})


@router.api_route("/v1/query", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/v1/compile{rest:path}", methods=["POST"], include_in_schema=False)
async def not_supported() -> Response:
    raise ServiceError(
        501, INVALID_OPERATION, "ACGS evaluates a bundle's compiled entrypoints; ad-hoc queries and compilation are not supported"
    )
