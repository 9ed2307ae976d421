"""Who wrote an audit event, and what they may write. Every stored event records, inside its
hashed payload, the principal that submitted it (with authentication off: the client's
address), whatever the client claimed; with authentication on an ``agent`` cannot write the
event types of ACGS's own services (decisions, executions, change-request transitions,
delivery refusals); and the service caps request bodies with a clear 413.

Before the fix: events recorded no submitter (and a client could not be told apart from
another), any ``agent`` key could forge a ``policy_decision``, ``acgs serve`` delivered with an
``agent`` key, and a body of any size was read and parsed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from acgs.audit.delivery import RESERVED_EVENT_TYPES
from acgs.security import SecuritySettings, create_key
from acgs.security.keys import open_key_store
from acgs.security.principal import ROLES, SERVICE
from acgs.services.audit import AuditSettings, create_app
from acgs.services.audit.access import ACCESS
from tests.services.audit_helpers import PRIVATE_KEY, execute
from tests.services.conftest import ServerThread

EVENT = {"event_type": "tool_call", "agent_id": "agent-7", "action": "files.read", "result": "allowed"}


@pytest.fixture(autouse=True)
def _signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_AUDIT_SIGNING_KEY", PRIVATE_KEY)


def _security(tmp_path: Path) -> SecuritySettings:
    settings = SecuritySettings(auth=True, data_dir=tmp_path / "keys", key_refresh=60.0)
    settings.validate()
    return settings


def _key(security: SecuritySettings, name: str, *roles: str) -> str:
    _, token = asyncio.run(create_key(open_key_store(security.resolved_key_store()), name, roles))
    return token


def test_auth_off_records_the_client_address_and_drops_a_claimed_submitter(tmp_path: Path) -> None:
    settings = AuditSettings(data_dir=tmp_path, checkpoint_interval=0)
    with ServerThread(create_app(settings)) as server:
        url = f"http://127.0.0.1:{server.port}"
        forged = {**EVENT, "submitted_by": {"subject": "policy-service", "via": "api_key", "roles": ["service"]}}
        r = httpx.post(f"{url}/audit/event", json=forged)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{url}/audit/events", json=[EVENT, forged])
        assert r.status_code == 200, r.text
        stored = httpx.get(f"{url}/audit/events").json()["events"]
    assert [e["event"]["submitted_by"] for e in stored] == [{"subject": "127.0.0.1", "via": "address"}] * 3
    # Auth off: no identities, so event types are not reserved (documented).
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert client.post("/audit/event", json={**EVENT, "event_type": "policy_decision"}).status_code == 200


def test_the_submitter_is_the_authenticated_principal_and_is_hashed(tmp_path: Path) -> None:
    security = _security(tmp_path)
    agent = _key(security, "agent-7-key", "agent")
    admin = _key(security, "admin-key", "admin")
    url_db = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    settings = AuditSettings(data_dir=tmp_path, checkpoint_interval=0)
    with TestClient(create_app(settings, security=security), base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {agent}"}
        r = client.post("/audit/event", json={**EVENT, "submitted_by": {"subject": "someone-else"}}, headers=headers)
        assert r.status_code == 200, r.text
        got = client.get(f"/audit/events/{r.json()['event_id']}", headers={"Authorization": f"Bearer {admin}"}).json()
        assert "event" in got, got
        submitter = got["event"]["submitted_by"]
        assert submitter["subject"] == "agent-7-key" and submitter["via"] == "api_key" and submitter["roles"] == ["agent"]
        # The submitter is inside the hashed payload: rewriting it in the database is caught.
        execute(url_db, "UPDATE audit_events SET payload = CAST(REPLACE(CAST(payload AS TEXT), 'agent-7-key', 'admin-key') AS BLOB)")
        report = client.post("/audit/verify", headers={"Authorization": f"Bearer {admin}"}).json()
        assert report["ok"] is False and report["first_bad_index"] == 0


@pytest.mark.parametrize("event_type", sorted(RESERVED_EVENT_TYPES))
def test_only_service_principals_write_the_services_event_types(tmp_path: Path, event_type: str) -> None:
    security = _security(tmp_path)
    agent = _key(security, "agent-key", "agent")
    service = _key(security, "service-key", SERVICE)
    settings = AuditSettings(data_dir=tmp_path, checkpoint_interval=0)
    forged = {**EVENT, "event_type": event_type}
    with TestClient(create_app(settings, security=security), base_url="http://127.0.0.1") as client:
        as_agent = {"Authorization": f"Bearer {agent}"}
        r = client.post("/audit/event", json=forged, headers=as_agent)
        assert r.status_code == 403 and r.json()["code"] == "reserved_event_type", r.text
        r = client.post("/audit/events", json=[EVENT, forged], headers=as_agent)
        assert r.status_code == 403 and "event 1" in r.json()["message"], r.text
        # The agent's own event types still go in.
        assert client.post("/audit/event", json=EVENT, headers=as_agent).status_code == 200
        r = client.post("/audit/events", json=[EVENT, forged], headers={"Authorization": f"Bearer {service}"})
        assert r.status_code == 200, r.text


def test_the_service_role_is_known_and_may_write_events() -> None:
    assert SERVICE in ROLES
    for route in ("POST /audit/event", "POST /audit/events"):
        rule = next(r for r in ACCESS.rules if r.route == route)
        assert SERVICE in rule.accepted


def test_acgs_serve_delivers_with_a_service_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from acgs.config import load_config
    from acgs.server import _internal_credential

    monkeypatch.delenv("ACGS_AUDIT_API_KEY", raising=False)
    monkeypatch.setenv("ACGS_AUTH", "1")
    monkeypatch.setenv("ACGS_DATA_DIR", str(tmp_path))
    config = load_config(None)

    async def scenario() -> tuple[Any, str]:
        revoke = await _internal_credential(config)
        assert revoke is not None
        token = os.environ["ACGS_AUDIT_API_KEY"]
        keys = await open_key_store(config.sections["security"].resolved_key_store()).all()
        await revoke()
        return keys, token

    keys, _ = asyncio.run(scenario())
    assert [sorted(k.roles) for k in keys] == [[SERVICE]]


def test_bodies_past_the_limit_are_refused_with_413(tmp_path: Path) -> None:
    settings = AuditSettings(data_dir=tmp_path, checkpoint_interval=0, max_body=4096)
    big = {**EVENT, "metadata": {"pad": "x" * 5000}}
    with ServerThread(create_app(settings)) as server:
        url = f"http://127.0.0.1:{server.port}"
        r = httpx.post(f"{url}/audit/event", json=big)
        assert r.status_code == 413 and r.json()["code"] == "request_too_large", r.text
        assert "4096" in r.json()["message"]

        # Without a Content-Length (chunked): refused as the body crosses the limit.
        def chunks() -> Any:
            data = httpx.Request("POST", url, json=big).content
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        r = httpx.post(f"{url}/audit/event", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "request_too_large", r.text
        assert httpx.post(f"{url}/audit/event", json=EVENT).status_code == 200
    # The default is 1 MiB.
    assert AuditSettings().max_body == 1024 * 1024
