"""Audit events of the sandbox controller and the one interface they leave through.

Every execution, denied ones included, produces one event. The audit engine's sink can be
plugged in for :class:`~acgs.services.sandbox.store.OutboxAuditSink`, which keeps events in
the sandbox database until something delivers them.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

EVENT_TYPE = "sandbox_execution"
ACTION = "sandbox.execute"


class AuditEvent(TypedDict):
    event_type: str
    agent_id: str
    action: str
    #: The execution's final status: completed, timeout, killed, denied or error.
    result: str
    metadata: dict[str, Any]
    decision_id: str


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None:
        """Persist ``event``; raising means it was not recorded."""
        ...
