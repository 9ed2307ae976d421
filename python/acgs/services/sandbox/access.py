"""Who may call each route of the sandbox controller when authentication is on (admin: all)."""

from __future__ import annotations

from acgs.security import AGENT, AUDITOR, PUBLIC, Access, Rule

ACCESS = Access(
    "sandbox",
    [
        Rule("POST /execute", AGENT),
        Rule("GET /executions/{execution_id}", AGENT, AUDITOR),
        Rule("GET /executions", AGENT, AUDITOR),
        Rule("GET /runtimes", AGENT, AUDITOR),
        Rule("GET /health", PUBLIC),
        Rule("GET /metrics", AUDITOR),
    ],
)
