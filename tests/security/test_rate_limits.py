"""Every rate rule of the constitution is enforced, from the services' own counts (docs/security.md,
"Claims and facts"): change requests (``rate_limits.per_minute.evolution``) and sandbox runs
(``rate_limits.per_minute.execute``) go through the same trusted facts as decisions, so the
constitution sees how many calls the caller made in the window, whatever the client sends.

Before this work the constitution declared these two limits but no rule read them, and the
evolution assessment took no facts at all: an agent could submit change requests and start runs
without limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import acgs
from acgs.security import SecuritySettings
from acgs.services.sandbox import SandboxService
from acgs.services.sandbox.app import create_app as sandbox_app
from tests.services.sandbox_fixtures import HIGH_TRUST, sandbox_service  # noqa: F401  (a fixture)
from tests.services.test_security import MINOR, build_app, running

pytestmark = pytest.mark.anyio

_LIMITS = acgs.Engine.load(acgs.default_bundle_path()).data["acgs"]["constitution"]["rate_limits"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _rate_reason(n: int, limit: int) -> str:
    return f"rate limit exceeded: {n} requests in {_LIMITS['window_seconds']} s, limit {limit}"


async def test_change_requests_past_the_per_minute_limit_are_rejected(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    limit = _LIMITS["per_minute"]["evolution"]
    app = build_app("evolution", SecuritySettings(), tmp_path, request)
    ask = {**MINOR, "requested_by": "alice"}  # auth off: the requester is named
    async with running(app) as client:
        for i in range(limit):
            r = await client.post("/evolution/request", json=ask)
            assert r.status_code == 201, r.text
            assert not any("rate limit" in v for v in r.json()["violations"]), (i, r.json())
        r = await client.post("/evolution/request", json=ask)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        assert out["status"] == "rejected", out
        assert _rate_reason(limit + 1, limit) in out["violations"]
        # The client cannot send counts of its own: the request schema has no such member.
        spoof = await client.post("/evolution/request", json={**ask, "trusted": {"request_count_1m": 0}})
        assert spoof.status_code == 422, spoof.text


def test_runs_past_the_per_minute_limit_are_denied(sandbox_service: SandboxService) -> None:  # noqa: F811
    limit = _LIMITS["per_minute"]["execute"]
    # A fresh app: its counters start at zero (the module's other tests share the service only).
    app = sandbox_app(sandbox_service.settings, service=sandbox_service, security=SecuritySettings())
    body = {
        "language": "python",
        "agent_id": "agent-rate",
        "agent": HIGH_TRUST,
        "runtime": "bwrap",
        "code": "pass",
    }
    with TestClient(app, base_url="http://localhost") as client:
        for i in range(limit):
            r = client.post("/execute", json=body)
            assert r.status_code == 200, (i, r.text)
        r = client.post("/execute", json=body)
        assert r.status_code == 403, r.text
        assert _rate_reason(limit + 1, limit) in r.json()["reasons"]
        spoof = client.post("/execute", json={**body, "trusted": {"request_count_1m": 0}})
        assert spoof.status_code == 400, spoof.text
