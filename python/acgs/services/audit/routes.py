"""Routes of the audit service: append, query, prove, checkpoint, verify, health, metrics."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

import acgs
from acgs.audit.delivery import RESERVED_EVENT_TYPES
from acgs.audit.events import EventFilter, StoredCheckpoint, StoredEvent, parse_timestamp
from acgs.audit.log import AuditLog
from acgs.errors import InvalidAuditEvent
from acgs.security.principal import ADMIN, SERVICE, own_records_only, principal_of
from acgs.services.audit.deps import LogDep, MetricsDep, SettingsDep
from acgs.services.audit.metrics import AuditMetrics
from acgs.services.audit.schemas import (
    MAX_INDEX,
    CheckpointOut,
    ConsistencyOut,
    EventIn,
    EventPage,
    ErrorOut,
    EventWithProof,
    Receipt,
    Receipts,
    StoredEventOut,
    VerifyIn,
)

router = APIRouter()


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents: these, and 422 (a malformed request or an event
    the log refuses), all in the service's error shape."""
    return {status: {"model": ErrorOut} for status in (*statuses, 422)}


class EventRejected(Exception):
    """An event the log refuses (422)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EventForbidden(Exception):
    """An event type the caller's role may not write (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def submitter_of(request: Request, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Who is appending: the authenticated principal (subject, how it authenticated, its key
    and roles), or with authentication off the client's address. With authentication on, only
    ``service`` and ``admin`` principals may write the event types ACGS's services write."""
    principal = principal_of(request.scope)
    if principal is None:
        # Authentication off: there are no identities, only the address the request came from.
        client = request.client
        return {"subject": client.host if client else "unknown", "via": "address"}
    if not principal.roles & {SERVICE, ADMIN}:
        for i, event in enumerate(events):
            if event["event_type"] in RESERVED_EVENT_TYPES:
                where = f"event {i}: " if len(events) > 1 else ""
                raise EventForbidden(
                    f"{where}event type {event['event_type']!r} is written only by ACGS's services (role service);"
                    f" {principal.subject} may not write it"
                )
    out: dict[str, Any] = {"subject": principal.subject, "via": principal.via, "roles": sorted(principal.roles)}
    if principal.key_id is not None:
        out["key_id"] = principal.key_id
    return out


def _checkpoint_out(log: AuditLog, cp: StoredCheckpoint) -> dict[str, Any]:
    return {
        "origin": log.origin,
        "size": cp.size,
        "root": cp.root.hex(),
        "checkpoint": cp.note,
        "verifier_key": log.verifier_key,
    }


async def _append(
    log: AuditLog, metrics: AuditMetrics, events: list[dict[str, Any]], submitter: dict[str, Any]
) -> list[dict[str, Any]]:
    began = time.perf_counter()
    try:
        prepared = log.prepare(events, submitter=submitter)
    except InvalidAuditEvent as exc:
        metrics.rejected += 1
        raise EventRejected(exc.message) from None
    appended = await log.append_prepared(prepared)
    metrics.appended(time.perf_counter() - began, max(a.index for a in appended))
    return [a.receipt() for a in appended]


@router.post("/audit/event", response_model=Receipt, tags=["audit"], responses=_errors(400, 403, 413))
async def post_event(event: EventIn, request: Request, log: LogDep, metrics: MetricsDep) -> dict[str, Any]:
    """Appends one event; answers only after it is durable. The payload records who submitted
    it (``submitted_by``)."""
    fields = [event.fields()]
    receipts = await _append(log, metrics, fields, submitter_of(request, fields))
    return receipts[0]


@router.post("/audit/events", response_model=Receipts, tags=["audit"], responses=_errors(400, 403, 413))
async def post_events(
    events: list[EventIn], request: Request, log: LogDep, metrics: MetricsDep, settings: SettingsDep
) -> dict[str, Any]:
    """Appends a batch in order, all or none; answers only after all are durable."""
    if not events:
        raise EventRejected("the batch is empty")
    if len(events) > settings.max_batch:
        raise EventRejected(f"the batch holds {len(events)} events; the limit is {settings.max_batch}")
    fields = [e.fields() for e in events]
    submitter = submitter_of(request, fields)
    try:
        log.prepare(fields, submitter=submitter)
    except InvalidAuditEvent:
        # Find which one, for the message.
        for i, f in enumerate(fields):
            try:
                log.prepare([f], submitter=submitter)
            except InvalidAuditEvent as exc:
                metrics.rejected += 1
                raise EventRejected(f"event {i}: {exc.message}") from None
    return {"receipts": await _append(log, metrics, fields, submitter)}


def _view(e: StoredEvent) -> dict[str, Any]:
    return e.view()


@router.get("/audit/events", response_model=EventPage, tags=["audit"], responses=_errors())
async def list_events(
    log: LogDep,
    settings: SettingsDep,
    request: Request,
    agent_id: str | None = None,
    event_type: str | None = None,
    decision_id: str | None = None,
    since: Annotated[str | None, Query(description="RFC 3339 time or epoch seconds, inclusive")] = None,
    until: Annotated[str | None, Query(description="RFC 3339 time or epoch seconds, exclusive")] = None,
    after: Annotated[int, Query(ge=-1, le=MAX_INDEX, description="index cursor: events after this index")] = -1,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> dict[str, Any]:
    """Events by index, filtered; page with ``after=<next_after>``."""
    try:
        since_us = parse_timestamp(since) if since else None
        until_us = parse_timestamp(until) if until else None
    except ValueError as exc:
        raise EventRejected(str(exc)) from None
    limit = min(limit, settings.max_page)
    own = own_records_only(principal_of(request.scope))
    if own is not None:
        # An agent (with authentication on) reads the events about itself only.
        if agent_id not in (None, own):
            return {"events": [], "next_after": None}
        agent_id = own
    flt = EventFilter(agent_id, event_type, decision_id, since_us, until_us)
    rows = await log.store.find(flt, after=after, limit=limit)
    return {"events": [_view(r) for r in rows], "next_after": rows[-1].index if len(rows) == limit else None}


@router.get("/audit/events/{event_id}", response_model=EventWithProof, tags=["audit"], responses=_errors(404))
async def get_event(event_id: str, log: LogDep, metrics: MetricsDep, request: Request) -> dict[str, Any]:
    """One event with its inclusion proof against the latest checkpoint (signed now if the
    event is newer than it)."""
    row = await log.store.get(event_id)
    own = own_records_only(principal_of(request.scope))
    if row is None or (own is not None and row.event().get("agent_id") != own):
        raise HTTPException(404, f"no event {event_id}")
    cp = await log.checkpoint(refresh=False)
    if cp is None or cp.size <= row.index:
        cp = await log.checkpoint()
        metrics.checkpoints_signed += 1
    out = _view(row)
    out["proof"] = None
    if cp is not None and row.index < cp.size:
        metrics.checkpoint_seen(cp)
        hashes = await log.inclusion(row.index, cp)
        out["proof"] = {
            "leaf_index": row.index,
            "tree_size": cp.size,
            "leaf_hash": acgs._acgs.leaf_hash(row.content_hash).hex(),
            "hashes": [h.hex() for h in hashes],
            "checkpoint": cp.note,
        }
    return out


@router.get("/audit/checkpoint", response_model=CheckpointOut, tags=["audit"], responses=_errors(404))
async def get_checkpoint(log: LogDep, metrics: MetricsDep, refresh: bool = True) -> dict[str, Any]:
    """The latest signed checkpoint; a new one is signed first if the log grew."""
    before = await log.checkpoint(refresh=False)
    cp = await log.checkpoint(refresh=refresh)
    if cp is None:
        raise HTTPException(404, "the log is empty; no checkpoint yet")
    if before is None or before.size != cp.size:
        metrics.checkpoints_signed += 1
    metrics.checkpoint_seen(cp)
    return _checkpoint_out(log, cp)


@router.get("/audit/consistency", response_model=ConsistencyOut, tags=["audit"], responses=_errors(400))
async def get_consistency(
    log: LogDep,
    from_size: Annotated[int, Query(alias="from", ge=0, le=MAX_INDEX)],
    to_size: Annotated[int, Query(alias="to", ge=0, le=MAX_INDEX)],
) -> dict[str, Any]:
    """The RFC 9162 consistency proof between the trees of two sizes."""
    proof, root_m, root_n = await log.consistency(from_size, to_size)
    return {"from": from_size, "to": to_size, "root_from": root_m.hex(), "root_to": root_n.hex(), "hashes": [h.hex() for h in proof]}


@router.post("/audit/verify", tags=["audit"], responses=_errors(400))
async def post_verify(log: LogDep, metrics: MetricsDep, body: Annotated[VerifyIn | None, Body()] = None) -> dict[str, Any]:
    """Re-hashes every stored payload of the range (default: the whole log) and reports the
    first bad index and why."""
    body = body or VerifyIn()
    report = await log.verify(body.from_index, body.to_index)
    metrics.verify_runs += 1
    metrics.verified_events += report.checked
    if not report.ok:
        metrics.verify_failures += 1
    return report.as_dict()


@router.get("/audit/key", tags=["audit"])
async def get_key(log: LogDep) -> dict[str, str]:
    """The log's verifier key (C2SP note format) and origin."""
    return {"origin": log.origin, "verifier_key": log.verifier_key}


@router.get("/health", tags=["ops"])
async def health(log: LogDep, metrics: MetricsDep) -> Response:
    try:
        size = await log.store.size()
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "store": log.store.kind, "error": f"{type(exc).__name__}: {exc}"}, 503)
    metrics.log_size = max(metrics.log_size, size)
    return JSONResponse({"status": "ok", "store": log.store.kind, "size": size, "origin": log.origin, "verifier_key": log.verifier_key})


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
async def get_metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


__all__ = ["EventForbidden", "EventRejected", "StoredEventOut", "router"]
