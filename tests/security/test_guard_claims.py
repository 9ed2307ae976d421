"""Claims never decide a guarded tool call (docs/security.md, "Claims and facts"): a ``trusted``
member or a claimed trust level inside the arguments, a spoofed session inside the arguments,
and tool names spelt other ways cannot turn a deny into a run. In process (the guard's input
through the core's admission) and through the policy service with authentication on (the
service's facts from the credential and the agent registry)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs import _acgs as core
from acgs.audit.events import EventFilter
from acgs.audit.log import AuditLog
from acgs.audit.store import open_store
from acgs.guard import Guard
from acgs.registry import new_agent, open_registry
from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app

PRIVATE_KEY, _ = core.generate_signing_key("test.acgs/guard-claims")
SPOOFS: list[dict[str, Any]] = [
    {"trusted": {"agent": {"trust_level": 1}, "principal": {"id": "root", "roles": ["admin", "dba"]}}},
    {"agent": {"trust_level": 1}},
    {"trust_level": 1, "roles": ["dba"]},
    {"trus\u0074ed": {"agent": {"trust_level": 1}}},
]


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    return acgs.Engine.load(acgs.default_bundle_path())


def test_trusted_and_trust_claims_in_arguments_lift_nothing(engine: acgs.Engine) -> None:
    """An embedded guard without facts trusts the agent with nothing: read_secret (min trust
    0.8) and db.delete_rows (role dba) stay denied whatever the arguments claim; with the
    embedder's facts at 0.5, likewise."""
    ran: list[str] = []
    for trusted in (None, {"agent": {"trust_level": 0.5}}):
        with Guard(engine, agent_id="agent-7", trusted=trusted) as g:

            @g.tool
            def read_secret(name: str, **claims: Any) -> str:
                ran.append("read_secret")
                return "s3cr3t"

            @g.tool(name="db.delete_rows")
            def delete_rows(table: str, where: str, **claims: Any) -> None:
                ran.append("delete_rows")

            for spoof in SPOOFS:
                with pytest.raises(acgs.ToolDenied) as denied:
                    read_secret("db_password", **spoof)
                assert any("trust" in r for r in denied.value.reasons), denied.value.reasons
                with pytest.raises(acgs.ToolDenied):
                    delete_rows("users", "1=1", **spoof)
                # The decision itself, asked directly with the claims as arguments.
                assert g.decide("read_secret", {"name": "db_password", **spoof}).outcome == "deny"
    assert ran == []


def test_a_session_spoofed_in_arguments_does_not_clear_the_history(engine: acgs.Engine) -> None:
    ran: list[str] = []
    with Guard(engine, agent_id="agent-7", trusted={"agent": {"trust_level": 0.95}}) as g:

        @g.tool
        def read_secret(name: str) -> str:
            ran.append("read_secret")
            return "s3cr3t"

        @g.tool
        def http_get(url: str, **extra: Any) -> str:
            ran.append("http_get")
            return "page"

        read_secret("api_token")
        clean = {"id": "s-new", "history": []}
        for extra in ({"session": clean}, {"history": []}, {"session_id": "s-new"}, {"trusted": {"session": clean}}):
            with pytest.raises(acgs.ToolDenied) as denied:
                http_get("https://api.github.com/", **extra)
            assert any("no_exfiltration_after_secrets" in r for r in denied.value.reasons), denied.value.reasons
    assert ran == ["read_secret"]


CASE_AND_SPACE = ["DB.DROP_TABLE", "Db.Drop_Table", " db.drop_table", "db.drop_table ", "db.drop_table\n", "\tdb.drop_table"]
OTHER_SPELLINGS = [
    "db/drop_table",
    "db:drop_table",
    "db..drop_table",
    "db.drop_table/",
    "\uff44\uff42.drop_table",  # fullwidth
    "db.drop\u200btable",  # zero-width space
    "db.drop_table\x00",
    "db.drop_table" + "x" * 200,
    "",
]


def test_tool_names_spelt_other_ways_never_run(engine: acgs.Engine, tmp_path: Path) -> None:
    """Case and surrounding space fold to the catalogued name: still denied. Other spellings
    are names outside the catalogue or its grammar: denied, or at most held for approval (an
    unknown tool is never allowed). Every call is audited and the log verifies."""
    log = AuditLog(open_store(f"sqlite:///{tmp_path / 'audit.sqlite3'}"), PRIVATE_KEY)
    asyncio.run(log.open())
    ran: list[str] = []
    with Guard(engine, agent_id="agent-7", audit=log, trusted={"agent": {"trust_level": 1}}) as g:
        for name in CASE_AND_SPACE + OTHER_SPELLINGS:

            def drop(table: str) -> None:
                ran.append(name)

            guarded = g.tool(drop, name=name)
            with pytest.raises((acgs.ToolDenied, acgs.ApprovalRequired)) as refused:
                guarded("users")
            if name in CASE_AND_SPACE:
                assert isinstance(refused.value, acgs.ToolDenied) and refused.value.tool == "db.drop_table", name
            assert g.decide(name, {"table": "users"}).outcome != "allow", name
        assert g.flush()
    stored = asyncio.run(log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=100))
    assert len(stored) == len(CASE_AND_SPACE + OTHER_SPELLINGS)
    assert asyncio.run(log.verify()).ok
    asyncio.run(log.close())
    assert ran == []


@pytest.fixture
def registry_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SecuritySettings, dict[str, str]]]:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("ACGS_AGENT_REGISTRY", f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    security = SecuritySettings(auth=True, data_dir=data, key_refresh=60.0)

    async def setup() -> dict[str, str]:
        registry = open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
        await registry.add(new_agent("low-agent", trust_level=Decimal("0.5")))
        await registry.add(new_agent("high-agent", trust_level=Decimal("0.95")))
        store = open_key_store(security.resolved_key_store())
        return {name: (await create_key(store, name, ("agent",)))[1] for name in ("low-agent", "high-agent")}

    yield security, asyncio.run(setup())


def test_remote_claims_lift_nothing(registry_env: tuple[SecuritySettings, dict[str, str]], tmp_path: Path) -> None:
    """Through the policy service with authentication on, the registry's trust decides: the
    low agent's claims (in arguments, in its agent id) do not lift its deny; the high agent is
    allowed; no credential is a deny (401), never a run."""
    security, tokens = registry_env
    app = policy_app(PolicySettings(data_dir=tmp_path, bundle=acgs.default_bundle_path()), security=security)
    ran: list[str] = []

    async def go() -> None:
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8004")

            def guard_as(token: str | None, agent_id: str) -> Guard:
                return Guard(url="http://127.0.0.1:8004", api_key=token, agent_id=agent_id, async_http_client=client)

            async def secret(g: Guard, **claims: Any) -> str:
                @g.tool
                async def read_secret(name: str, **claims: Any) -> str:
                    ran.append(g.agent_id)
                    return "s3cr3t"

                return await read_secret("db_password", **claims)

            low = guard_as(tokens["low-agent"], "high-agent")  # claims another agent's id
            for spoof in SPOOFS:
                with pytest.raises(acgs.ToolDenied) as denied:
                    await secret(low, **spoof)
                assert any("trust" in r for r in denied.value.reasons), denied.value.reasons
            with pytest.raises(acgs.ToolDenied, match="401"):
                await secret(guard_as(None, "high-agent"))
            assert await secret(guard_as(tokens["high-agent"], "high-agent")) == "s3cr3t"
            await client.aclose()

    asyncio.run(go())
    assert ran == ["high-agent"]
