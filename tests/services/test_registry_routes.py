"""The agent registry's admin REST routes (acgs.registry.routes), on a small FastAPI app built
here over a real SQLite registry (and a real PostgreSQL one), through httpx: JSON bodies with
exact numbers, OPA-style 4xx errors, and the bodies an attacker would send."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from acgs.registry import AgentRecord, CachedRegistry, new_agent, open_registry
from acgs.registry.routes import ACCESS_RULES, BODY_LIMIT, agent_routes
from acgs.security import Access

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[tuple[str, str]]]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'agents.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database")
    registry = CachedRegistry(open_registry(url), refresh=3600)
    await registry.start()
    changes: list[tuple[str, str]] = []

    async def on_change(action: str, record: AgentRecord, req: Request) -> None:
        changes.append((action, record.agent_id))

    app = FastAPI()
    app.include_router(agent_routes(registry, on_change=on_change))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http, changes
    await registry.close()


async def _post(http: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await http.post("/v1/agents", content=json.dumps(body), headers=JSON)


def _error(response: httpx.Response, status: int, detail: str, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "errors"} and body["errors"][0]["code"] == detail, body
    if field is not None:
        assert body["errors"][0]["field"] == field, body
    message: str = body["message"]
    return message


async def test_crud(client: tuple[httpx.AsyncClient, list[tuple[str, str]]]) -> None:
    http, changes = client
    assert (await http.get("/v1/agents")).json() == {"agents": []}
    created = await http.post(
        "/v1/agents",
        content=b'{"agent_id": "research-7", "trust_level": 0.300000000000000000000000000001, "tier": "gold",'
        b' "owner": "ops", "attributes": {"max_cost": 12.50, "tools": ["web"]}}',
        headers=JSON,
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/agents/research-7"
    # Numbers leave exactly as they came.
    assert '"trust_level":0.300000000000000000000000000001' in created.text and '"max_cost":12.50' in created.text
    record = created.json()
    assert record["agent_id"] == "research-7" and record["disabled"] is False and record["created_at"].endswith("Z")

    got = await http.get("/v1/agents/research-7")
    assert got.status_code == 200 and got.text == created.text
    assert [a["agent_id"] for a in (await http.get("/v1/agents")).json()["agents"]] == ["research-7"]

    patched = await http.patch(
        "/v1/agents/research-7",
        content=json.dumps({"trust_level": "0.5", "owner": None, "attributes": {"tools": None, "n": 2}}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["trust_level"] == 0.5 and body["owner"] is None and body["tier"] == "gold"
    assert body["attributes"] == {"max_cost": 12.5, "n": 2} and '"max_cost":12.50' in patched.text
    cleared = await http.patch("/v1/agents/research-7", content='{"attributes": null, "disabled": true}', headers=JSON)
    assert cleared.json()["attributes"] == {} and cleared.json()["disabled"] is True

    removed = await http.delete("/v1/agents/research-7")
    assert removed.status_code == 200 and removed.json()["agent_id"] == "research-7"
    _error(await http.get("/v1/agents/research-7"), 404, "agent_not_found")
    _error(await http.delete("/v1/agents/research-7"), 404, "agent_not_found")
    _error(await http.patch("/v1/agents/research-7", content='{"tier": "x"}', headers=JSON), 404, "agent_not_found")
    assert changes == [("added", "research-7"), ("updated", "research-7"), ("updated", "research-7"), ("removed", "research-7")]


async def test_duplicates_conflict(client: tuple[httpx.AsyncClient, list[tuple[str, str]]]) -> None:
    http, _ = client
    assert (await _post(http, {"agent_id": "Agent-1", "trust_level": 0.5})).status_code == 201
    for same in ("Agent-1", "agent-1"):
        response = await _post(http, {"agent_id": same, "trust_level": 1})
        assert response.status_code == 409 and response.json()["code"] == "resource_conflict"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"agent_id": "a\u0000", "trust_level": 0.5}, "agent_id", "is not an agent id"),
        ({"agent_id": "a\u200b", "trust_level": 0.5}, "agent_id", "is not an agent id"),
        ({"agent_id": "\u0430dmin", "trust_level": 0.5}, "agent_id", "is not an agent id"),
        ({"agent_id": "x" * 129, "trust_level": 0.5}, "agent_id", "is not an agent id"),
        ({"agent_id": 7, "trust_level": 0.5}, "agent_id", "must be a string"),
        ({"trust_level": 0.5}, "agent_id", "is required"),
        ({"agent_id": "a1"}, "trust_level", "is required"),
        ({"agent_id": "a1", "trust_level": "1e1"}, "trust_level", "not a plain decimal"),
        ({"agent_id": "a1", "trust_level": "NaN"}, "trust_level", "not a plain decimal"),
        ({"agent_id": "a1", "trust_level": 10}, "trust_level", "outside [0, 1]"),
        ({"agent_id": "a1", "trust_level": -0.0001}, "trust_level", "outside [0, 1]"),
        ({"agent_id": "a1", "trust_level": True}, "trust_level", "not a boolean"),
        ({"agent_id": "a1", "trust_level": None}, "trust_level", "not null"),
        ({"agent_id": "a1", "trust_level": [1]}, "trust_level", "not an array"),
        ({"agent_id": "a1", "trust_level": 0.5, "role": "admin"}, "role", "unknown field"),
        ({"agent_id": "a1", "trust_level": 0.5, "created_at": 0}, "created_at", "unknown field"),
        ({"agent_id": "a1", "trust_level": 0.5, "attributes": []}, "attributes", "must be a JSON object"),
        ({"agent_id": "a1", "trust_level": 0.5, "attributes": {"trust_level": 1}}, "attributes.trust_level", "field of the record"),
        ({"agent_id": "a1", "trust_level": 0.5, "attributes": {"x": "y" * 9000, "z": "y" * 9000}}, "attributes", "allowed"),
        ({"agent_id": "a1", "trust_level": 0.5, "tier": "gold\n"}, "tier", "is not a tier"),
        ({"agent_id": "a1", "trust_level": 0.5, "disabled": "no"}, "disabled", "must be true or false"),
    ],
)
async def test_bad_records_are_refused(client: tuple[httpx.AsyncClient, list[tuple[str, str]]], body: Any, field: str, message: str) -> None:
    http, changes = client
    assert message in _error(await _post(http, body), 400, "invalid_agent", field)
    assert changes == [] and (await http.get("/v1/agents")).json() == {"agents": []}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"agent_id": "a1", "trust_level": NaN}', "not valid JSON"),
        (b'{"agent_id": "a1", "trust_level": Infinity}', "not valid JSON"),
        (b'{"agent_id": "a1", "trust_level": 0.5, "trust_level": 1}', "duplicate key"),
        (b'{"agent_id": "a1", "trust_level": 0.5', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "not valid JSON"),
        (b'{"agent_id": "a\xff", "trust_level": 0.5}', "not UTF-8"),
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    ],
)
async def test_malformed_bodies_are_refused(client: tuple[httpx.AsyncClient, list[tuple[str, str]]], text: bytes, message: str) -> None:
    http, _ = client
    assert message in _error(await http.post("/v1/agents", content=text, headers=JSON), 400, "invalid_body")


async def test_a_trust_level_past_one_by_a_hair_is_refused(client: tuple[httpx.AsyncClient, list[tuple[str, str]]]) -> None:
    http, _ = client
    # A double reads this as 1.0; the registry reads it as what it is.
    response = await http.post("/v1/agents", content=b'{"agent_id": "a1", "trust_level": 1.0000000000000000000001}', headers=JSON)
    _error(response, 400, "invalid_agent", "trust_level")
    # Exponent forms of JSON numbers are JSON numbers: 0.1e1 is exactly 1.
    ok = await http.post("/v1/agents", content=b'{"agent_id": "a1", "trust_level": 0.1e1}', headers=JSON)
    assert ok.status_code == 201 and '"trust_level":1,' in ok.text


async def test_bodies_need_json_and_a_size_cap(client: tuple[httpx.AsyncClient, list[tuple[str, str]]]) -> None:
    http, _ = client
    body = json.dumps({"agent_id": "a1", "trust_level": 0.5})
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        _error(await http.post("/v1/agents", content=body, headers=headers), 415, "invalid_body")
    huge = json.dumps({"agent_id": "a1", "trust_level": 0.5, "attributes": {"x": "y" * BODY_LIMIT}})
    _error(await http.post("/v1/agents", content=huge, headers=JSON), 413, "invalid_body")


@pytest.mark.parametrize("path", ["a%00", "a%E2%80%8B", "%D0%B0dmin", "a%0A", "a%20b", "-a"])
async def test_malformed_ids_in_the_path_are_refused(client: tuple[httpx.AsyncClient, list[tuple[str, str]]], path: str) -> None:
    http, _ = client
    _error(await http.get(f"/v1/agents/{path}"), 400, "invalid_agent", "agent_id")
    _error(await http.delete(f"/v1/agents/{path}"), 400, "invalid_agent", "agent_id")
    _error(await http.patch(f"/v1/agents/{path}", content='{"tier": "x"}', headers=JSON), 400, "invalid_agent", "agent_id")


async def test_patch_refusals(client: tuple[httpx.AsyncClient, list[tuple[str, str]]]) -> None:
    http, changes = client
    assert (await _post(http, {"agent_id": "a1", "trust_level": 0.5})).status_code == 201
    cases: list[tuple[Any, str, str]] = [
        ({}, "body", "nothing to change"),
        ({"agent_id": "a2"}, "agent_id", "cannot be changed"),
        ({"trust_level": None}, "trust_level", "cannot be removed"),
        ({"disabled": None}, "disabled", "cannot be removed"),
        ({"trust_level": "1e1"}, "trust_level", "not a plain decimal"),
        ({"created_at": 0}, "created_at", "unknown field"),
        ({"attributes": {"owner": "me"}}, "attributes.owner", "field of the record"),
        ({"attributes": {"a": "x" * 9000, "b": "x" * 9000}}, "attributes", "allowed"),
        ({"attributes": "x"}, "attributes", "must be a JSON object"),
    ]
    for body, field, message in cases:
        response = await http.patch("/v1/agents/a1", content=json.dumps(body), headers=JSON)
        assert message in _error(response, 400, "invalid_agent", field)
    # The same id in the body is allowed; nothing else changed the record.
    response = await http.patch("/v1/agents/a1", content='{"agent_id": "a1", "tier": "t"}', headers=JSON)
    assert response.status_code == 200 and response.json()["trust_level"] == 0.5
    assert changes == [("added", "a1"), ("updated", "a1")]


def test_access_rules_are_admin_only() -> None:
    access = Access("policy", ACCESS_RULES)
    for method, path in [("GET", "/v1/agents"), ("POST", "/v1/agents"), ("GET", "/v1/agents/a1"), ("PATCH", "/v1/agents/a1"), ("DELETE", "/v1/agents/a1")]:
        rule = access.rule_for(method, path)
        assert rule in ACCESS_RULES and rule.accepted == frozenset({"admin"}), (method, path)


async def test_the_routes_take_the_registry_from_the_request(tmp_path: Path) -> None:
    registry = open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    app = FastAPI()
    app.state.registry = registry
    app.include_router(agent_routes(lambda request: request.app.state.registry))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await _post(http, {"agent_id": "a1", "trust_level": "0.25"})).status_code == 201
    got = await registry.get("a1")
    assert got is not None and str(got.trust_level) == "0.25"


async def test_with_a_cache_reads_are_fresh_and_writes_are_served_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.sqlite3'}"
    cache = CachedRegistry(open_registry(url), refresh=3600)
    await cache.start()
    app = FastAPI()
    app.include_router(agent_routes(cache))
    other_node = open_registry(url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        # Written by another node after this one loaded: the admin routes still see it.
        await other_node.add(new_agent("elsewhere", "0.3"))
        assert cache.lookup("elsewhere") is None
        assert (await http.get("/v1/agents/elsewhere")).json()["trust_level"] == 0.3
        # Written here: this node's request path serves it without waiting for a reload.
        assert (await _post(http, {"agent_id": "here", "trust_level": 0.7})).status_code == 201
        record = cache.trusted("here")
        assert record is not None and str(record.trust_level) == "0.7"
        assert (await http.patch("/v1/agents/here", content='{"disabled": true}', headers=JSON)).status_code == 200
        assert cache.trusted("here") is None
    await cache.close()
