"""Reads are scoped (docs/security.md, "Serving"): with authentication on, an agent sees its own
change requests and audit events only, and acts only as itself; reviewers and auditors see what
their role needs. Before this work an agent key listed every agent's change requests and could
submit one for another agent's id."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.test_security import (  # noqa: F401  (creds is a fixture)
    MINOR,
    Credentials,
    bearer,
    build_app,
    creds,
    running,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_agent_sees_and_submits_its_own_change_requests_only(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seven = bearer(await creds.key("agent-7", "agent"))
    eight = bearer(await creds.key("agent-8", "agent"))
    rita = bearer(await creds.key("rita", "reviewer"))
    app = build_app("evolution", creds.settings(), tmp_path, request)
    async with running(app) as client:
        mine = await client.post("/evolution/request", json=MINOR, headers=seven)
        assert mine.status_code == 201, mine.text
        rid = mine.json()["request_id"]
        theirs = await client.post("/evolution/request", json={**MINOR, "agent_id": "agent-8"}, headers=eight)
        assert theirs.status_code == 201, theirs.text
        # Not for another agent's id.
        forged = await client.post("/evolution/request", json={**MINOR, "agent_id": "agent-8"}, headers=seven)
        assert forged.status_code == 403, forged.text
        # Each agent lists its own; asking for another's gives nothing; the reviewer sees both.
        listed = (await client.get("/evolution/requests", headers=seven)).json()
        assert [r["agent_id"] for r in listed["items"]] == ["agent-7"] and listed["total"] == 1
        other = (await client.get("/evolution/requests", params={"agent_id": "agent-8"}, headers=seven)).json()
        assert other["items"] == [] and other["total"] == 0
        assert (await client.get(f"/evolution/requests/{rid}", headers=seven)).status_code == 200
        assert (await client.get(f"/evolution/requests/{rid}", headers=eight)).status_code == 404
        assert (await client.get("/evolution/requests", headers=rita)).json()["total"] == 2


async def test_an_agent_reads_its_own_audit_events_only(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seven = bearer(await creds.key("agent-7", "agent"))
    auditor = bearer(await creds.key("ada", "auditor"))
    app = build_app("audit", creds.settings(), tmp_path, request)
    async with running(app) as client:
        ids = {}
        for agent in ("agent-7", "agent-8"):
            event = {"event_type": "tool_call", "agent_id": agent, "action": "x.y", "result": "ok"}
            r = await client.post("/audit/event", json=event, headers=seven)
            assert r.status_code in (200, 201), r.text
            ids[agent] = r.json()["event_id"]
        events = (await client.get("/audit/events", headers=seven)).json()["events"]
        assert {e["event"]["agent_id"] for e in events} == {"agent-7"}
        assert (await client.get("/audit/events", params={"agent_id": "agent-8"}, headers=seven)).json()["events"] == []
        assert (await client.get(f"/audit/events/{ids['agent-8']}", headers=seven)).status_code == 404
        assert (await client.get(f"/audit/events/{ids['agent-7']}", headers=seven)).status_code == 200
        every = (await client.get("/audit/events", headers=auditor)).json()["events"]
        assert {e["event"]["agent_id"] for e in every} == {"agent-7", "agent-8"}
