"""Who may call each route of the audit service when authentication is on (admin: all).
Services and agents write events; auditors read, prove and verify."""

from __future__ import annotations

from acgs.security import AGENT, AUDITOR, PUBLIC, Access, Rule

ACCESS = Access(
    "audit",
    [
        Rule("POST /audit/event", AGENT),
        Rule("POST /audit/events", AGENT),
        Rule("GET /audit/events", AUDITOR),
        Rule("GET /audit/events/{event_id}", AUDITOR),
        Rule("GET /audit/checkpoint", AUDITOR),
        Rule("GET /audit/consistency", AUDITOR),
        Rule("POST /audit/verify", AUDITOR),
        Rule("GET /audit/key", AGENT, AUDITOR),
        Rule("GET /health", PUBLIC),
        Rule("GET /metrics", AUDITOR),
    ],
)
