"""Who may call each route of the policy service when authentication is on (admin: all)."""

from __future__ import annotations

from acgs.registry.routes import ACCESS_RULES as AGENT_REGISTRY_RULES
from acgs.security import AGENT, AUDITOR, PUBLIC, Access, Rule

ACCESS = Access(
    "policy",
    [
        # Decisions: the hot path, listed first.
        Rule("POST /v1/data/{path:path}", AGENT),
        Rule("GET /v1/data/{path:path}", AGENT),
        Rule("POST /v1/batch/data/{path:path}", AGENT),
        Rule("POST /", AGENT),
        Rule("GET,POST /v1/data", AGENT),
        Rule("GET /health", PUBLIC),
        Rule("GET /metrics", AUDITOR),
        Rule("GET /v1/policies", AGENT, AUDITOR),
        Rule("GET /v1/policies/{policy_id:path}", AGENT, AUDITOR),
        Rule("GET /v1/status", AGENT, AUDITOR),
        Rule("GET /v1/config", AUDITOR),
        Rule("GET,POST /v1/query", AGENT),
        Rule("POST /v1/compile{rest:path}", AGENT),
        # The agent registry (mounted with authentication on): administrators only.
        *AGENT_REGISTRY_RULES,
    ],
)
