"""Who may call each route of the evolution service when authentication is on (admin: all).
The workflow checks more on top: only the requester (or an admin) cancels or deploys, nobody
reviews their own change."""

from __future__ import annotations

from acgs.security import AGENT, AUDITOR, PUBLIC, REVIEWER, Access, Rule
from acgs.security.principal import SERVICE

ACCESS = Access(
    "evolution",
    [
        Rule("POST /evolution/request", AGENT),
        Rule("POST /evolution/actions", AGENT, SERVICE),
        Rule("GET /evolution/requests", AGENT, REVIEWER, AUDITOR),
        Rule("GET /evolution/requests/{request_id}", AGENT, REVIEWER, AUDITOR),
        Rule("GET /evolution/request/{request_id}", AGENT, REVIEWER, AUDITOR),
        Rule("POST /evolution/requests/{request_id}/approve", REVIEWER),
        Rule("POST /evolution/requests/{request_id}/reject", REVIEWER),
        Rule("POST /evolution/requests/{request_id}/cancel", AGENT),
        Rule("POST /evolution/requests/{request_id}/deploy", AGENT),
        Rule("POST /evolution/requests/{request_id}/rollback", AGENT, REVIEWER),
        Rule("GET /evolution/review", REVIEWER, AUDITOR),
        Rule("GET /evolution/review/{request_id}", REVIEWER, AUDITOR),
        Rule("POST /evolution/review/{request_id}/{verdict}", REVIEWER),
        Rule("GET /evolution/static/review.js", REVIEWER, AUDITOR),
        Rule("GET /health", PUBLIC),
        Rule("GET /metrics", AUDITOR),
    ],
    browser=["/evolution/review", "/evolution/static/"],
)
