"""Who may call each route of the audit service when authentication is on (admin: all).
Services and agents write events (the event types of ACGS's services only with the ``service``
role: see ``acgs.audit.delivery.RESERVED_EVENT_TYPES``); auditors read, prove and verify."""

from __future__ import annotations

from acgs.security import AGENT, AUDITOR, PUBLIC, Access, Rule
from acgs.security.principal import SERVICE

ACCESS = Access(
    "audit",
    [
        Rule("POST /audit/event", AGENT, SERVICE),
        Rule("POST /audit/events", AGENT, SERVICE),
        # An agent reads its own events only (routes.py scopes them); auditors read all.
        Rule("GET /audit/events", AGENT, AUDITOR),
        Rule("GET /audit/events/{event_id}", AGENT, AUDITOR),
        Rule("GET /audit/checkpoint", AUDITOR),
        Rule("GET /audit/consistency", AUDITOR),
        Rule("POST /audit/verify", AUDITOR),
        Rule("GET /audit/key", AGENT, AUDITOR, SERVICE),
        Rule("GET /health", PUBLIC),
        Rule("GET /metrics", AUDITOR),
    ],
)
