"""Audit events of the evolution service: how each one is built, and where they go.

Every state change writes its event to the evolution database's outbox (ACGS's one audit
outbox, ``acgs.audit.outbox``) in the same transaction as the change, so an event is never lost
and never recorded for a change that did not happen. The one ``OutboxRelay`` then hands the
outbox, in order, to an ``AuditSink`` (the audit engine once it is connected); an event leaves
the outbox only after the sink acknowledged it, so delivery is at least once.

Events are fitted to the audit log's limits when they are made. An event the audit log still
refuses (a 4xx, see ``acgs.audit.delivery``) moves to the dead letters and a
``delivery_rejected`` event takes its place; transient failures are retried with backoff, in
order.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol, cast

from acgs.audit.delivery import fit_event
from acgs.audit.outbox import OutboxRelay
from acgs.security.principal import Principal
from acgs.services.evolution.records import AuditEvent, EvolutionRecord
from acgs.services.evolution.store import PRODUCER

EVENT_TYPE = "evolution_transition"

#: The authenticated principal a route acts for while it calls the workflow (``acting_as``).
_ACTING: ContextVar[Principal | None] = ContextVar("acgs_evolution_acting", default=None)


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """While the block runs, the events whose ``actor`` is ``principal`` say how it was
    authenticated: ``actor_via`` (``oidc``, ``jwt``, ``api_key``) and, for a person signed in
    through single sign-on, ``actor_issuer`` and ``actor_subject`` as the provider gave them
    (the workflow itself only knows the name)."""
    token = _ACTING.set(principal)
    try:
        yield
    finally:
        _ACTING.reset(token)


def _actor_details(actor: str) -> dict[str, Any]:
    principal = _ACTING.get()
    if principal is None or principal.subject != actor:
        return {}
    out: dict[str, Any] = {"actor_via": principal.via}
    if principal.issuer is not None:
        out["actor_issuer"] = principal.issuer
        out["actor_subject"] = principal.subject
    if principal.key_id is not None:
        out["actor_key_id"] = principal.key_id
    return out


def audit_event(
    record: EvolutionRecord,
    action: str,
    *,
    actor: str,
    previous: str | None,
    at: float,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """The one place an evolution audit event is made. ``action`` is ``evolution.<verb>``;
    ``result`` is the request's status after the event. ``metadata.idempotency_key`` is unique
    per event, so a sink that sees an event twice (delivery is at least once) can tell."""
    metadata: dict[str, Any] = {
        "idempotency_key": f"evolution:{uuid.uuid4()}",
        "request_id": record.request_id,
        "change_type": record.type,
        "from_status": previous,
        "to_status": record.status.value,
        "actor": actor,
        **_actor_details(actor),
        "requested_by": record.requested_by,
        "approval_type": record.approval_type,
        "kind": record.kind,
        "at": at,
    }
    if record.kind == "action":
        metadata["tool"] = record.submission.get("tool")
        metadata["session_id"] = record.submission.get("session_id")
    if reason is not None:
        metadata["reason"] = reason
    if details:
        metadata.update(details)
    event = AuditEvent(
        event_type=EVENT_TYPE,
        agent_id=record.agent_id,
        action=action,
        result=record.status.value,
        metadata=metadata,
        decision_id=record.decision_id,
        constitutional_hash=record.constitutional_hash,
    )
    return cast(AuditEvent, fit_event(event))


class AuditSink(Protocol):
    """Where audit events end up. ``record`` returns only once the event is durable there;
    it may see an event twice (after a crash between delivery and bookkeeping)."""

    async def record(self, event: AuditEvent) -> None: ...


__all__ = ["EVENT_TYPE", "PRODUCER", "AuditSink", "OutboxRelay", "acting_as", "audit_event"]
