"""HTTP routes of the sandbox controller."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from acgs.errors import InvalidInputError
from acgs.security.principal import own_records_only, principal_of

from acgs.services.sandbox.deps import Service
from acgs.services.sandbox.schemas import ErrorBody, ExecuteRequest, Execution, RuntimeInfo, RuntimesResponse

router = APIRouter()

#: A malformed request is a 400 here (the app's validation handler), not FastAPI's 422.
_INVALID: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "malformed request"}}


@router.post(
    "/execute",
    response_model=Execution,
    responses={
        **_INVALID,
        413: {"model": ErrorBody, "description": "request body over the configured limit"},
        409: {"model": ErrorBody, "description": "decision_id already names a run"},
        403: {"model": Execution, "description": "denied by the constitution (status denied, reasons)"},
        422: {"model": Execution, "description": "allowed, but no runtime or interpreter for it here (status error)"},
        429: {"model": Execution, "description": "the run queue is full (status error)"},
        500: {"model": Execution, "description": "the run failed inside the controller (status error)"},
    },
)
async def execute(req: ExecuteRequest, service: Service, request: Request) -> JSONResponse:
    """Check the run against the constitution, queue it, run it and return the execution.
    Every request that reaches the constitution becomes an execution (GET it later by id)
    and an audit event, whatever the outcome."""
    try:
        req.keep_exact_numbers(await request.body())
    except InvalidInputError as exc:
        return JSONResponse({"code": "invalid_request", "message": str(exc)}, status_code=400)
    own = own_records_only(principal_of(request.scope))
    if own is not None and req.agent_id != own:
        # With authentication on, an agent runs code as itself: the credential says who it is.
        return JSONResponse(
            {"code": "forbidden", "message": f"agent_id {req.agent_id!r} is not the caller ({own!r})"}, status_code=403
        )
    if req.decision_id is not None and await asyncio.to_thread(service.store.has_decision, req.decision_id):
        # One decision, one run: a second run under the same id would land in the first
        # run's audit trail (another caller's, possibly).
        return JSONResponse(
            {"code": "decision_id_in_use", "message": f"decision_id {req.decision_id!r} already names a run"}, status_code=409
        )
    facts = getattr(request.app.state, "trusted_facts", None)
    trusted = (await facts.for_request("execute", request.scope))[0] if facts is not None else None
    result = await service.execute(req, trusted)
    return JSONResponse(Execution.model_validate(result.record).model_dump(), status_code=result.http_status)


@router.get("/executions/{execution_id}", response_model=Execution, responses={404: {"model": ErrorBody}})
async def get_execution(execution_id: str, service: Service, request: Request) -> JSONResponse:
    record = service.get(execution_id)
    own = own_records_only(principal_of(request.scope))
    if record is None or (own is not None and record.get("agent_id") != own):
        # Another agent's execution is answered as absent: its id tells the caller nothing.
        return JSONResponse({"code": "not_found", "message": f"no execution {execution_id}"}, status_code=404)
    return JSONResponse(Execution.model_validate(record).model_dump())


@router.get("/executions", response_model=list[Execution], responses=_INVALID)
async def list_executions(
    service: Service, request: Request, agent_id: str | None = None, limit: int = Query(50, ge=1, le=1000)
) -> list[Execution]:
    """Recent executions; an agent (with authentication on) sees its own only."""
    own = own_records_only(principal_of(request.scope))
    if own is not None:
        if agent_id not in (None, own):
            return []
        agent_id = own
    return [Execution.model_validate(r) for r in service.recent(agent_id, limit)]


@router.get("/runtimes", response_model=RuntimesResponse)
async def runtimes(service: Service) -> RuntimesResponse:
    """Each runtime, whether this host can use it, and why not."""
    return RuntimesResponse(
        runtimes=[RuntimeInfo(**s.as_dict()) for s in service.statuses.values()],
        auto_order=list(service.settings.auto_order),
        concurrency=service.settings.concurrency,
        max_queue=service.settings.max_queue,
    )


@router.get("/health")
async def health(service: Service) -> dict[str, object]:
    available = [n for n, s in service.statuses.items() if s.available]
    return {
        "status": "ok" if available else "degraded",
        "runtimes": available,
        "queue": service.queue.stats(),
        "warm_pool": service.pool_state(),
        "constitutional_hash": service.engine.constitutional_hash,
    }
