"""Claims never decide: a client's spelling of an action, its own ``trusted`` document and its
claimed trust cannot turn a deny into an allow (docs/security.md, "Claims and facts", "Names").

Each test goes through the policy service as ``acgs serve`` builds it (defaults: auth off) or
with authentication on and the agent registry, over HTTP (ASGI transport). Before this work:
"DATA.EXFILTRATE" and its other spellings were scored as ordinary actions and allowed;
"report.other" (not in the constitution) was allowed; a client that sent
``"trusted": {"request_count_1m": 0}`` was never rate limited and one that sent nothing was never
counted; and a claimed trust level of 1 was believed whoever sent it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs.registry import new_agent, open_registry
from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app

SEED: dict[str, Any] = acgs.SEED_REQUEST
FLAT = "/v1/data/acgs/main/decision"


def _with(**changes: Any) -> dict[str, Any]:
    req: dict[str, Any] = {**SEED, "context": {**SEED["context"], "agent": {**SEED["context"]["agent"]}}}
    for key, value in changes.items():
        if key == "trust":
            req["context"]["agent"]["trust_level"] = value
        else:
            req[key] = value
    return req


@asynccontextmanager
async def serving(security: SecuritySettings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = policy_app(PolicySettings(bundle=acgs.default_bundle_path()), security=security or SecuritySettings())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8004") as c:
            yield c


async def _ask(c: httpx.AsyncClient, req: Any, how: str = "flat", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The decision through one of the routes: the flat seed call, the Data API (decision and
    allow), the batch API."""
    if how == "flat":
        r = await c.post(FLAT, json=req, headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json())
    if how == "data":
        r = await c.post(FLAT, json={"input": req}, headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json()["result"])
    if how == "allow":
        r = await c.post("/v1/data/acgs/main/allow", json={"input": req}, headers=headers)
        assert r.status_code == 200, r.text
        return {"allow": r.json()["result"], "reasons": []}
    r = await c.post("/v1/batch/data/acgs/main/decision", json={"inputs": [req]}, headers=headers)
    assert r.status_code in (200, 207), r.text
    return dict(r.json()["results"][0]["result"])


ROUTES = ["flat", "data", "allow", "batch"]

SPELLINGS = [
    "DATA.EXFILTRATE",
    " data.exfiltrate ",
    "Data.Exfiltrate\t",
    "data.exfiltrate\u200b",  # zero-width space
    "\u200bdata.exfiltrate",
    "d\u0430ta.exfiltrate",  # Cyrillic a
    "\uff44\uff41\uff54\uff41.exfiltrate",  # full-width letters
    "networ\u212a.raw_socket",  # Kelvin sign
    "data.exfiltrate\u0000",
    "data.exfiltrate.",
    "system..execute_shell",
    "data.exfiltrate\u202e",  # right-to-left override
]


@pytest.mark.parametrize("how", ROUTES)
def test_no_spelling_of_a_dangerous_action_is_allowed(how: str) -> None:
    async def go() -> None:
        async with serving() as c:
            for spelt in SPELLINGS:
                d = await _ask(c, _with(action=spelt), how)
                assert d["allow"] is False, (spelt, d)
            # The seed's own request is still allowed at 0.96.
            seed = await _ask(c, SEED, how)
            assert seed["allow"] is True
            if how != "allow":
                assert seed["compliance_score"] == 0.96

    asyncio.run(go())


@pytest.mark.parametrize("how", ROUTES)
def test_an_action_the_constitution_does_not_know_is_never_allowed(how: str) -> None:
    async def go() -> None:
        async with serving() as c:
            for action in ["report.other", "data.read_public.v2", "tool.unlisted", "x.y"]:
                d = await _ask(c, _with(action=action), how)
                assert d["allow"] is False, (action, d)
                if how != "allow":
                    assert f"action {action} is not in the constitution's action catalogue" in d["reasons"]

    asyncio.run(go())


def test_a_clients_trusted_document_is_dropped_and_the_rate_rule_counts_for_real() -> None:
    """The constitution allows 100 decisions a minute. A client that sends its own counters
    (0) is counted anyway: its 101st decision in the window is denied."""

    async def go() -> None:
        async with serving() as c:
            spoof = _with(trusted={"request_count_1m": 0, "agent": {"trust_level": 1}})
            for i in range(100):
                d = await _ask(c, spoof, ROUTES[i % 4])
                assert d["allow"] is True, (i, d)
            d = await _ask(c, spoof)
            assert d["allow"] is False
            assert "rate limit exceeded: 101 requests in 60 s, limit 100" in d["reasons"]
            # Nor does any other route or spelling escape the count.
            for how in ROUTES:
                assert (await _ask(c, spoof, how))["allow"] is False, how

    asyncio.run(go())


def test_a_client_cannot_raise_its_trust_through_trusted_with_auth_off() -> None:
    async def go() -> None:
        async with serving() as c:
            low = _with(trust=0.5, trusted={"agent": {"trust_level": 1}})
            d = await _ask(c, low)
            assert d["allow"] is False and "trust level 0.5 is below the minimum 0.8" in d["reasons"]

    asyncio.run(go())


def test_with_auth_on_the_registry_decides_the_trust_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent registered at 0.5 claims 0.9 (and sends trusted.agent 1): denied. An agent the
    registry does not know is trusted with nothing. A registered 0.95 with a claim of 0.6 is
    lowered by its own claim; with the seed's 0.9 it is allowed."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("ACGS_AGENT_REGISTRY", f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    security = SecuritySettings(auth=True, data_dir=data, key_refresh=60.0)

    async def go() -> None:
        registry = open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
        await registry.add(new_agent("low-agent", trust_level=Decimal("0.5")))
        await registry.add(new_agent("high-agent", trust_level=Decimal("0.95")))
        store = open_key_store(security.resolved_key_store())
        tokens = {name: (await create_key(store, name, ("agent",)))[1] for name in ("low-agent", "high-agent", "stranger")}
        auth = {name: {"Authorization": f"Bearer {t}"} for name, t in tokens.items()}
        async with serving(security) as c:
            for how in ROUTES:
                spoof = _with(trust=0.9, trusted={"agent": {"trust_level": 1}})
                low = await _ask(c, spoof, how, auth["low-agent"])
                assert low["allow"] is False, (how, low)
                stranger = await _ask(c, SEED, how, auth["stranger"])
                assert stranger["allow"] is False, (how, stranger)
                high = await _ask(c, SEED, how, auth["high-agent"])
                assert high["allow"] is True, (how, high)
                lowered = await _ask(c, _with(trust=0.6), how, auth["high-agent"])
                assert lowered["allow"] is False, (how, lowered)
            d = await _ask(c, SEED, "flat", auth["low-agent"])
            assert "trust level 0.5 is below the minimum 0.8" in d["reasons"]
            d = await _ask(c, SEED, "flat", auth["stranger"])
            assert "trust level 0 is below the minimum 0.8" in d["reasons"]

    asyncio.run(go())


def test_sandbox_admission_takes_the_registered_trust_over_the_claim() -> None:
    """A run's trust tier (runtimes, network, limits) comes from the registry's level: an agent
    registered at 0.1 that claims 1 and sends its own trusted document gets the lowest tier,
    not network."""
    from acgs.services.sandbox.admission import admit

    engine = acgs.Engine.load(acgs.default_bundle_path())
    run = {
        "agent_id": "agent-7",
        "agent": {"trust_level": 1},
        "language": "python",
        "runtime": "auto",
        "limits": {"cpu_seconds": 5, "memory_mb": 128, "timeout_s": 5, "network": True},
        "constitutional_hash": engine.constitutional_hash,
        "trusted": {"agent": {"trust_level": 1}},
    }
    believed = admit(engine, run, b'{"principal":{"id":"agent-7","via":"api_key","roles":["agent"]},"agent":{"trust_level":0.1}}')
    claimed = admit(engine, run)  # auth off: the claim stands, the client's trusted is dropped
    assert claimed.trust_tier != believed.trust_tier
    low = admit(engine, {**run, "agent": {"trust_level": 0.1}, "trusted": None})
    assert believed.trust_tier == low.trust_tier and believed.allow == low.allow
