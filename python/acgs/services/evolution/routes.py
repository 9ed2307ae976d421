"""The evolution service's HTTP API (``/evolution/...``) and the reviewers' page."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from acgs import _acgs as core
from acgs.errors import AcgsError, InvalidInputError
from acgs.security.oidc import sign_in_of
from acgs.security.principal import own_records_only, principal_of
from acgs.services.evolution import actions, review
from acgs.services.evolution.audit import acting_as
from acgs.services.evolution.deps import (
    CallerDep,
    PrincipalDep,
    ReviewerDep,
    WorkflowDep,
    check_requester,
    reviewer_from_form,
)
from acgs.services.evolution.records import Status
from acgs.services.evolution.schemas import (
    ActionRequestIn,
    CancelIn,
    DeployIn,
    ErrorOut,
    EvolutionRequestIn,
    EvolutionRequestOut,
    EvolutionRequestPage,
    ReviewIn,
    RollbackIn,
)
from acgs.services.evolution.workflow import InvalidRequest, NotPermitted, RequestMissing, WorkflowError
from acgs.trust import owner_of, with_member

STATIC = Path(__file__).parent / "static"

router = APIRouter()

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 422)
}


@router.post(
    "/evolution/request",
    status_code=201,
    response_model=EvolutionRequestOut,
    responses=_ERRORS,
    summary="Submit a change for assessment and review",
)
async def submit(body: EvolutionRequestIn, request: Request, workflow: WorkflowDep, caller: CallerDep) -> EvolutionRequestOut:
    try:
        body.keep_exact_numbers(await request.body())
    except InvalidInputError as exc:
        raise InvalidRequest(str(exc)) from None
    check_requester(request, body.requester)
    own = own_records_only(principal_of(request.scope))
    if own is not None and body.agent_id != own:
        # With authentication on, an agent asks to change itself: the credential says who.
        raise NotPermitted(f"agent_id must be the caller ({own})")
    facts = getattr(request.app.state, "trusted_facts", None)
    trusted = (await facts.for_request("evolution", request.scope))[0] if facts is not None else None
    return EvolutionRequestOut.of(await workflow.submit(body, caller, trusted))


def _exact_member(raw: bytes, member: str) -> bytes | None:
    """The text of ``raw[member]`` as the client wrote it (numbers as written)."""
    try:
        return core.exact_json(raw, member)
    except (AcgsError, ValueError) as exc:
        raise InvalidRequest(f"{member}: {exc}") from None


def _arguments_sha256(arguments: bytes, body: ActionRequestIn) -> str:
    """The digest of the arguments as sent (their canonical JSON, RFC 8785, numbers as
    written), checked against ``arguments_sha256`` when both came."""
    try:
        digest = hashlib.sha256(core.canonicalize_json(arguments)).hexdigest()
    except (AcgsError, ValueError) as exc:
        raise InvalidRequest(f"arguments: {exc}") from None
    if body.arguments_sha256 is not None and body.arguments_sha256 != digest:
        raise InvalidRequest("arguments_sha256 is not the digest of the arguments' canonical JSON")
    return digest


async def _action_facts(request: Request, session_id: str | None, decision_id: str, tool: str) -> bytes | None:
    """The trusted document of an action's decision: the caller's facts (counted under
    ``actions.RATE_KIND``) and, when the services keep a session ledger, the session's history
    and the caller's calls across its sessions as the ledger has them (as the policy service
    gives them to the same decision). A ledger that
    cannot be read raises: the action is then refused as a fault."""
    facts = getattr(request.app.state, "trusted_facts", None)
    trusted = (await facts.for_request(actions.RATE_KIND, request.scope))[0] if facts is not None else None
    ledger = getattr(request.app.state, "session_ledger", None)
    if ledger is None:
        return trusted
    # Less the call's own entry (the policy service recorded it under this decision id): a
    # call is never its own predecessor.
    session = await actions.session_member(ledger, owner_of(request.scope), session_id, decision_id, tool)
    return with_member(trusted if trusted is not None else b"{}", "session", session)


@router.post(
    "/evolution/actions",
    status_code=201,
    response_model=EvolutionRequestOut,
    responses={**_ERRORS, 200: {"model": EvolutionRequestOut, "description": "this decision's request, submitted before"}},
    summary="Hold one tool call for review, on the terms of the service's own tool decision",
)
async def submit_action(
    body: ActionRequestIn, request: Request, workflow: WorkflowDep, caller: CallerDep
) -> Response:
    """The service decides the call itself (``acgs/tools/decision`` with the caller's trusted
    facts): ``require_approval`` holds it for review on that decision's terms (201; 200 for a
    decision submitted before); ``deny`` is 403 ``action_denied`` with the reasons (stored as a
    rejected request, audited); ``allow`` is 409 ``approval_not_required``."""
    check_requester(request, body.requested_by)
    own = own_records_only(principal_of(request.scope))
    if own is not None and body.agent_id != own:
        # An agent asks for its own calls: the credential says who.
        raise NotPermitted(f"agent_id must be the caller ({own})")
    raw = await request.body()
    arguments = _exact_member(raw, "arguments") or b"{}"
    digest = _arguments_sha256(arguments, body)
    call = actions.SubmittedCall(
        agent_id=body.agent_id,
        tool=body.tool,
        decision_id=body.decision_id,
        arguments=arguments,
        session_id=body.session_id,
        agent=_exact_member(raw, "agent") if body.agent is not None else None,
        constitutional_hash=body.constitutional_hash,
    )
    try:
        trusted = await _action_facts(request, body.session_id, body.decision_id, body.tool)
    except Exception as exc:  # the ledger (or the facts) unavailable: a deny, never a decision without them
        trusted = None
        call = dataclasses.replace(call, fault=f"the caller's trusted facts are unavailable: {type(exc).__name__}: {exc}")
    record, new = await workflow.submit_action(body, caller, call, digest, trusted, session_owner=owner_of(request.scope))
    if own is not None and record.agent_id != own:
        raise RequestMissing(f"no evolution request {record.request_id!r}")
    out = EvolutionRequestOut.of(record)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if new else 200)


@router.get("/evolution/requests", response_model=EvolutionRequestPage, responses=_ERRORS)
async def list_requests(
    workflow: WorkflowDep,
    request: Request,
    status: Status | None = None,
    agent_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    # The stores take offsets as 64-bit signed integers; a larger one is a 422, not a 500.
    offset: Annotated[int, Query(ge=0, le=(1 << 63) - 1)] = 0,
) -> EvolutionRequestPage:
    own = own_records_only(principal_of(request.scope))
    if own is not None:
        # An agent (with authentication on) sees its own change requests only.
        if agent_id not in (None, own):
            return EvolutionRequestPage(items=[], total=0, limit=limit, offset=offset, next_offset=None)
        agent_id = own
    records, total = await workflow.list_requests(status=status, agent_id=agent_id, limit=limit, offset=offset)
    return EvolutionRequestPage(
        items=[EvolutionRequestOut.of(r) for r in records],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + len(records) if offset + len(records) < total else None,
    )


@router.get("/evolution/requests/{request_id}", response_model=EvolutionRequestOut, responses=_ERRORS)
async def get_request(request_id: str, workflow: WorkflowDep, request: Request) -> EvolutionRequestOut:
    record = await workflow.get(request_id)
    own = own_records_only(principal_of(request.scope))
    if own is not None and record.agent_id != own:
        # Another agent's request is answered as absent.
        raise RequestMissing(f"no evolution request {request_id!r}")
    return EvolutionRequestOut.of(record)


# The original service's path for one request.
router.add_api_route(
    "/evolution/request/{request_id}",
    get_request,
    methods=["GET"],
    response_model=EvolutionRequestOut,
    include_in_schema=False,
)


@router.post("/evolution/requests/{request_id}/approve", response_model=EvolutionRequestOut, responses=_ERRORS)
async def approve(
    request_id: str, body: ReviewIn, request: Request, workflow: WorkflowDep, reviewer: ReviewerDep
) -> EvolutionRequestOut:
    with acting_as(principal_of(request.scope)):
        return EvolutionRequestOut.of(await workflow.approve(request_id, reviewer, body.reason))


@router.post("/evolution/requests/{request_id}/reject", response_model=EvolutionRequestOut, responses=_ERRORS)
async def reject(
    request_id: str, body: ReviewIn, request: Request, workflow: WorkflowDep, reviewer: ReviewerDep
) -> EvolutionRequestOut:
    with acting_as(principal_of(request.scope)):
        return EvolutionRequestOut.of(await workflow.reject(request_id, reviewer, body.reason))


@router.post("/evolution/requests/{request_id}/cancel", response_model=EvolutionRequestOut, responses=_ERRORS)
async def cancel(
    request_id: str, request: Request, workflow: WorkflowDep, caller: PrincipalDep, body: CancelIn | None = None
) -> EvolutionRequestOut:
    with acting_as(principal_of(request.scope)):
        return EvolutionRequestOut.of(await workflow.cancel(request_id, caller, body.reason if body else None))


@router.post("/evolution/requests/{request_id}/deploy", response_model=EvolutionRequestOut, responses=_ERRORS)
async def deploy(
    request_id: str, request: Request, workflow: WorkflowDep, caller: PrincipalDep, body: DeployIn | None = None
) -> EvolutionRequestOut:
    with acting_as(principal_of(request.scope)):
        return EvolutionRequestOut.of(await workflow.deploy(request_id, caller, body.note if body else None))


@router.post("/evolution/requests/{request_id}/rollback", response_model=EvolutionRequestOut, responses=_ERRORS)
async def rollback(
    request_id: str, body: RollbackIn, request: Request, workflow: WorkflowDep, caller: PrincipalDep
) -> EvolutionRequestOut:
    """Carries out the rollback plan. The answer is 200 whether or not every step succeeded:
    ``status`` is ``rolled_back`` only if all did, and ``rollbacks[-1].steps`` says how each went."""
    with acting_as(principal_of(request.scope)):
        record = await workflow.rollback(request_id, caller, body.reason, attest_manual=body.attest_manual)
    return EvolutionRequestOut.of(record)


# -- the reviewers' page ----------------------------------------------------------------------


def _signed_in(request: Request) -> review.SignedIn | None:
    """The person signed in through single sign-on, for the page (None: no sign-on session)."""
    sign_in = sign_in_of(request.app)
    data = sign_in.identity(request.scope) if sign_in is not None else None
    if data is None:
        return None
    return review.SignedIn(name=str(data.get("name") or data["sub"]), subject=data["sub"], issuer=data["iss"], csrf=data["csrf"])


@router.get("/evolution/review", response_class=HTMLResponse, include_in_schema=False)
async def review_page(
    request: Request,
    workflow: WorkflowDep,
    status: Status = Status.PENDING,
    done: str | None = None,
) -> HTMLResponse:
    records, total = await workflow.list_requests(status=status, agent_id=None, limit=200, offset=0)
    return HTMLResponse(review.page(records, total=total, status=status, notice=done, who=_signed_in(request)))


@router.get("/evolution/review/{request_id}", response_class=HTMLResponse, include_in_schema=False)
async def review_detail(request_id: str, request: Request, workflow: WorkflowDep) -> HTMLResponse:
    """One request's page: its risk breakdown, changes and history, and the form while pending."""
    who = _signed_in(request)
    try:
        record = await workflow.get(request_id)
    except WorkflowError as exc:
        records, total = await workflow.list_requests(status=Status.PENDING, agent_id=None, limit=200, offset=0)
        return HTMLResponse(review.page(records, total=total, status=Status.PENDING, error=exc.message, who=who), exc.status)
    return HTMLResponse(review.detail(record, who=who))


@router.post("/evolution/review/{request_id}/{verdict}", include_in_schema=False)
async def review_form(request_id: str, verdict: str, request: Request, workflow: WorkflowDep) -> Response:
    """The page's forms post here (``application/x-www-form-urlencoded``) and are sent back to
    the page; a refused review re-renders the page with the reason and the refusal's status.
    Posts another site makes a browser send never get here: the site guard refuses them (403,
    ``acgs.security.site``); with single sign-on, a form must also carry the session's CSRF
    token (``deps.reviewer_from_form``)."""
    fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    try:
        if verdict not in ("approve", "reject"):
            raise InvalidRequest(f"unknown verdict {verdict!r}")
        reviewer = reviewer_from_form(request, fields)
        reason = (fields.get("reason") or "").strip()
        if not reason:
            raise InvalidRequest("a reason is required")
        with acting_as(principal_of(request.scope)):
            if verdict == "approve":
                record = await workflow.approve(request_id, reviewer, reason)
            else:
                record = await workflow.reject(request_id, reviewer, reason)
    except WorkflowError as exc:
        records, total = await workflow.list_requests(status=Status.PENDING, agent_id=None, limit=200, offset=0)
        html = review.page(records, total=total, status=Status.PENDING, error=exc.message, who=_signed_in(request))
        return HTMLResponse(html, status_code=exc.status)
    notice = f"{'approved' if verdict == 'approve' else 'rejected'} {request_id}: now {record.status.value}"
    return RedirectResponse(f"/evolution/review?{urlencode({'done': notice})}", status_code=303)


@router.get("/evolution/static/review.js", include_in_schema=False)
async def review_script() -> FileResponse:
    return FileResponse(STATIC / "review.js", media_type="text/javascript")


@router.get("/health", include_in_schema=True)
async def health(request: Request, workflow: WorkflowDep) -> JSONResponse:
    """503 while the policy engine cannot assess (every request is then rejected)."""
    problem = workflow.assessor.problem()
    body = {
        "status": "ok" if problem is None else "degraded",
        "policy_problem": problem,
        "constitutional_hash": workflow.assessor.constitutional_hash,
        "bundle_digest": workflow.assessor.bundle_digest,
        "store": type(workflow.store).__name__,
    }
    return JSONResponse(body, status_code=200 if problem is None else 503)
