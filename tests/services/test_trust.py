"""The ``trusted`` document (acgs.trust): who is asking, its registry record and its usage
counters, built by ACGS; and admission, which puts it in place of whatever the client sent.
Real SQLite registry, real Redis."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

import acgs
from acgs.errors import InvalidInputError
from acgs.registry import CachedRegistry, new_agent, open_registry
from acgs.security.principal import Principal
from acgs.trust import UNREGISTERED, LocalCounters, RedisCounters, TrustedFacts, admit
from tests.services.conftest import RedisServer

AGENT = Principal("agent-7", frozenset({"agent"}), "api_key", "0123456789ab")


def test_admission_drops_the_clients_trusted_and_keeps_every_number_as_spelt() -> None:
    raw = b'{"a": 1.000000000000000000001, "trusted": {"request_count_1m": 0}, "b": [1E+2, -0]}'
    assert json.loads(admit(raw, None)) == {"a": 1.0, "b": [100.0, 0]}
    assert b"1.000000000000000000001" in admit(raw, None) and b"1E+2" in admit(raw, None)
    out = admit(raw, b'{"request_count_1m":101}')
    assert json.loads(out)["trusted"] == {"request_count_1m": 101}
    # Spelt with an escape, the key is still "trusted".
    assert "trusted" not in json.loads(admit(b'{"trus\\u0074ed": {"request_count_1m": 0}}', None))
    with pytest.raises(InvalidInputError):
        admit(b'{"trusted": {}, "trusted": {"request_count_1m": 0}}', None)
    with pytest.raises(InvalidInputError):
        admit(b"{}", b"[1]")


def test_counts_are_reported_past_the_constitutions_limit_only() -> None:
    """Under the limit the count is absent (the constitution reads "within the limit"), so a
    caller's equal requests stay equal inputs for the caches; past it, the count is there."""
    facts = TrustedFacts.for_constitution(acgs.Engine.load(acgs.default_bundle_path()).data)
    assert facts.limits["decision"] == 100 and facts.window_seconds == 60

    async def go() -> list[bytes]:
        return await facts.documents("decision", None, "10.0.0.9", 102)

    docs = asyncio.run(go())
    assert docs[0] == docs[99] == b'{"principal":{"id":"10.0.0.9","via":"address","roles":[]}}'
    assert json.loads(docs[100])["request_count_1m"] == 101
    assert json.loads(docs[101])["request_count_1m"] == 102


def test_local_counters_count_per_key_and_window() -> None:
    c = LocalCounters()
    assert [c.hit_now("decision:a", 60) for _ in range(3)] == [1, 2, 3]
    assert c.hit_now("decision:b", 60) == 1
    assert c.hit_now("execute:a", 60) == 1


def test_facts_without_authentication_name_the_address_and_no_agent() -> None:
    facts = TrustedFacts(window_seconds=60, limits={"decision": 0})  # every count reported

    async def go() -> list[dict[str, object]]:
        docs = [await facts.document("decision", None, "127.0.0.1") for _ in range(2)]
        docs += await facts.documents("decision", None, "127.0.0.2", 2)
        return [json.loads(d) for d in docs]

    one, two, other, other2 = asyncio.run(go())
    assert one == {"principal": {"id": "127.0.0.1", "via": "address", "roles": []}, "request_count_1m": 1}
    assert two["request_count_1m"] == 2
    assert (other["request_count_1m"], other2["request_count_1m"]) == (1, 2)
    assert "agent" not in one


def test_facts_with_authentication_carry_the_registry_record_or_nothing(tmp_path: Path) -> None:
    async def go() -> tuple[bytes, bytes, bytes]:
        store = open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
        registry = CachedRegistry(store, 0.0)
        await registry.add(new_agent("agent-7", trust_level=Decimal("0.85"), tier="standard"))
        await registry.start()
        facts = TrustedFacts(registry=registry, limits={"decision": 0})
        registered = await facts.document("decision", AGENT, "127.0.0.1")
        stranger = await facts.document("decision", Principal("nobody", frozenset({"agent"}), "jwt"), None)
        none = await TrustedFacts().document("decision", AGENT, None)
        await registry.close()
        return registered, stranger, none

    registered, stranger, none = asyncio.run(go())
    doc = json.loads(registered)
    assert doc["principal"] == {"id": "agent-7", "via": "api_key", "roles": ["agent"]}
    assert doc["agent"]["trust_level"] == 0.85 and doc["agent"]["tier"] == "standard"
    assert b'"trust_level":0.85' in registered  # the registry's exact decimal text
    assert json.loads(stranger)["agent"] == json.loads(UNREGISTERED) == json.loads(none)["agent"]


def test_a_registered_low_trust_is_what_the_constitution_believes(tmp_path: Path) -> None:
    """End to end through the engine: the registry's 0.5 denies whatever the client claims or
    sends under trusted; a claim can lower it further but never raise it."""
    engine = acgs.Engine.load(acgs.default_bundle_path())
    claim = {**acgs.SEED_REQUEST, "trusted": {"request_count_1m": 0, "agent": {"trust_level": 1}}}
    facts = b'{"principal":{"id":"a","via":"api_key","roles":["agent"]},"request_count_1m":1,"agent":{"trust_level":0.5}}'
    d = engine.decide(claim, trusted=facts)
    assert d["allow"] is False and "trust level 0.5 is below the minimum 0.8" in d["reasons"]
    ok = b'{"principal":{"id":"a","via":"api_key","roles":["agent"]},"request_count_1m":1,"agent":{"trust_level":1}}'
    assert engine.decide(acgs.SEED_REQUEST, trusted=ok)["allow"] is True
    # Without facts (embedded use), the client's trusted is dropped: its rate figures are gone.
    spoofed = {**acgs.SEED_REQUEST, "trusted": {"request_count_1m": 10**6}}
    assert engine.decide(spoofed)["allow"] is True
    over = b'{"request_count_1m":101}'
    assert "rate limit exceeded: 101 requests in 60 s, limit 100" in engine.decide(acgs.SEED_REQUEST, trusted=over)["reasons"]


def test_redis_counters_share_one_count_and_fall_back_when_redis_fails(redis_server: RedisServer) -> None:
    from redis.asyncio import Redis

    async def go() -> tuple[list[int], int, int]:
        a = RedisCounters(Redis.from_url(redis_server.url))
        b = RedisCounters(Redis.from_url(redis_server.url))
        counts = [await a.hit("decision:x", 60), await b.hit("decision:x", 60), await a.hit("decision:x", 60)]
        redis_server.stop()
        fallback = await a.hit("decision:x", 60)
        errors = a.errors
        await a.close()
        await b.close()
        return counts, fallback, errors

    counts, fallback, errors = asyncio.run(go())
    assert counts == [1, 2, 3]
    assert fallback == 1 and errors == 1  # counted in process, never "unlimited"
