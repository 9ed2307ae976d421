"""The agent registry (acgs.registry): checks on every field (attacks included), both stores
(a real SQLite file and a real throwaway PostgreSQL), the cached reader the request path uses,
the ``acgs agents`` commands and the configuration keys."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from acgs.cli import cli
from acgs.config import ConfigError, load_config, template
from acgs.registry import (
    AgentExists,
    AgentNotFound,
    AgentRecord,
    AgentRegistry,
    AgentUpdate,
    CachedRegistry,
    InvalidAgentError,
    RegistrySettings,
    RegistryUnavailable,
    check_agent_id,
    check_attributes,
    check_trust_level,
    dumps_exact,
    loads_exact,
    new_agent,
    open_registry,
    trust_text,
)
from acgs.registry.records import MAX_ATTRIBUTES_BYTES, MAX_ATTRIBUTES_DEPTH


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- agent ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("agent_id", ["a", "agent-1", "svc:research@team.prod", "A_b.c-d", "x" * 128, "7"])
def test_good_agent_ids(agent_id: str) -> None:
    assert check_agent_id(agent_id) == agent_id


@pytest.mark.parametrize(
    "agent_id",
    [
        "",
        "x" * 129,
        "agent\x00",
        "agent\n",
        "agent-1\n",  # a trailing newline slips past a regex anchored with $
        "agent\t1",
        "agent\x7f",
        "agent\u200b",  # zero-width space
        "agent\u202e1",  # right-to-left override
        "\ufeffagent",  # byte order mark
        "\u0430gent",  # Cyrillic a
        "\uff41gent",  # fullwidth a
        "agent\u0301",  # combining accent
        " agent",
        "agent ",
        "-agent",
        ".",
        "..",
        "a/b",
        "a\\b",
        "a%2Fb",
        "a b",
    ],
)
def test_agent_ids_with_control_invisible_or_foreign_characters_are_refused(agent_id: str) -> None:
    with pytest.raises(InvalidAgentError) as err:
        check_agent_id(agent_id)
    assert err.value.field == "agent_id" and isinstance(err.value, ValueError)


@pytest.mark.parametrize("value", [None, 42, b"agent", ["agent"]])
def test_agent_ids_must_be_strings(value: Any) -> None:
    with pytest.raises(InvalidAgentError, match="agent_id: must be a string"):
        check_agent_id(value)


# -- trust levels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.8", "0.8"),
        ("0.80", "0.8"),
        ("1", "1"),
        ("1.000", "1"),
        ("0", "0"),
        ("0.0", "0"),
        (".5", "0.5"),
        ("0.123456789012345678901234567890", "0.12345678901234567890123456789"),
        ("0.300000000000000000000000000001", "0.300000000000000000000000000001"),
        (Decimal("0.95"), "0.95"),
        (Decimal("10E-1"), "1"),
        (Decimal("95E-2"), "0.95"),
        (Decimal("-0"), "0"),
        (0, "0"),
        (1, "1"),
        (0.25, "0.25"),
        (0.1, "0.1"),  # a float is taken as the number its shortest repr names
    ],
)
def test_trust_levels_are_exact_decimals(value: Any, text: str) -> None:
    level = check_trust_level(value)
    assert isinstance(level, Decimal) and trust_text(level) == text


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "nan",
        "Infinity",
        "1e1",
        "1E-1",
        "1e0",
        "-0.1",
        "+0.5",
        "-0",
        "1.0000000001",
        "1.000000000000000000000000000001",
        "2",
        "10",
        " 0.5",
        "0.5 ",
        "0.5\n",
        "0_5",
        "0,5",
        "\u0660.\u0665",  # Arabic-Indic digits, which Decimal() would read
        "\uff10.\uff15",  # fullwidth digits
        "0x1",
        "",
        ".",
        "0.1234567890123456789012345678901",  # 31 digits after the point
        "0.5.5",
        float("nan"),
        float("inf"),
        -0.5,
        1.5,
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("1E-999999999"),  # in range, but a billion digits
        Decimal("1E+999999999"),
        Decimal("1.0000000000000000000000000000000000000001"),
        2,
        -1,
        True,
        False,
        None,
        [0.5],
        {"value": 0.5},
    ],
)
def test_bad_trust_levels_are_refused(value: Any) -> None:
    with pytest.raises(InvalidAgentError) as err:
        check_trust_level(value)
    assert err.value.field == "trust_level"


def test_trust_level_one_past_one_at_any_precision_is_refused() -> None:
    # What a double would round to 1 stays above 1 here.
    assert float("1.00000000000000000001") == 1.0
    with pytest.raises(InvalidAgentError, match="outside"):
        check_trust_level(loads_exact("1.00000000000000000001"))
    with pytest.raises(InvalidAgentError, match="not a plain decimal"):
        check_trust_level("1.00000000000000000001e0")


# -- attributes ---------------------------------------------------------------------------------


def test_attributes_keep_exact_numbers() -> None:
    attrs = check_attributes(loads_exact('{"max_cost": 12.50, "limit": 0.30000000000000000000000000001, "n": 3, "tags": ["a", 1e2]}'))
    assert dumps_exact(attrs) == '{"limit":0.30000000000000000000000000001,"max_cost":12.50,"n":3,"tags":["a",100]}'
    # A float given from Python becomes the decimal it prints as.
    assert dumps_exact(check_attributes({"x": 0.1})) == '{"x":0.1}'


def test_attributes_are_copied_not_shared() -> None:
    given: dict[str, Any] = {"limits": {"calls": 5}}
    checked = check_attributes(given)
    given["limits"]["calls"] = 500
    assert checked == {"limits": {"calls": 5}}


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ("not an object", "attributes", "must be a JSON object"),
        ([1, 2], "attributes", "must be a JSON object"),
        ({"trust_level": 1}, "attributes.trust_level", "field of the record itself"),
        ({"agent_id": "root"}, "attributes.agent_id", "field of the record itself"),
        ({"x": float("nan")}, "attributes.x", "not a JSON number"),
        ({"x": float("inf")}, "attributes.x", "not a JSON number"),
        ({"x": Decimal("NaN")}, "attributes.x", "not a JSON number"),
        ({"x": Decimal("1E+999999999")}, "attributes.x", "exponent"),
        ({"x": 10**70}, "attributes.x", "digits"),
        ({"bad\x00key": 1}, "attributes.bad\x00key", "control or invisible"),
        ({"key\u200b": 1}, "attributes.key\u200b", "control or invisible"),
        ({"": 1}, "attributes.", "empty"),
        ({"k" * 200: 1}, "attributes." + "k" * 40 + "...", "longer than"),
        ({"x": "\ud800"}, "attributes.x", "lone surrogate"),
        ({"x": {1: "a"}}, "attributes.x", "keys must be strings"),
        ({"x": object()}, "attributes.x", "not a JSON value"),
        ({"x": b"bytes"}, "attributes.x", "not a JSON value"),
    ],
)
def test_bad_attributes_are_refused(value: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidAgentError, match=message) as err:
        check_attributes(value)
    assert err.value.field == field


def test_huge_attributes_are_refused() -> None:
    check_attributes({"blob": "x" * (MAX_ATTRIBUTES_BYTES - 20)})
    with pytest.raises(InvalidAgentError, match=f"more than the {MAX_ATTRIBUTES_BYTES} allowed"):
        check_attributes({"blob": "x" * MAX_ATTRIBUTES_BYTES})
    with pytest.raises(InvalidAgentError, match="more than the"):
        check_attributes({f"k{i}": i for i in range(5000)})
    with pytest.raises(InvalidAgentError):
        check_attributes({"blob": "x" * 10_000_000})


def test_deep_attributes_are_refused() -> None:
    shallow: Any = 1
    for _ in range(MAX_ATTRIBUTES_DEPTH):
        shallow = {"a": shallow}
    check_attributes(shallow)
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(InvalidAgentError, match="nested deeper"):
        check_attributes({"deep": deep})


@pytest.mark.parametrize("text", ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}', '{"x": 1, "x": 2}', "{'x': 1}"])
def test_exact_json_refuses_what_json_cannot_hold(text: str) -> None:
    with pytest.raises(ValueError):
        loads_exact(text)


def test_owner_and_tier() -> None:
    record = new_agent("a1", "0.5", tier="gold.v2", owner="Team Ops <ops@example.org>")
    assert (record.tier, record.owner) == ("gold.v2", "Team Ops <ops@example.org>")
    for bad in ("", "gold tier", "gold\x00", "g\u200bold", "x" * 65, 3):
        with pytest.raises(InvalidAgentError) as err:
            new_agent("a1", "0.5", tier=bad)
        assert err.value.field == "tier"
    for bad in ("", " ops", "ops\n", "ops\u202e", "o" * 257, "e\u0301", 7):
        with pytest.raises(InvalidAgentError) as err:
            new_agent("a1", "0.5", owner=bad)
        assert err.value.field == "owner"
    with pytest.raises(InvalidAgentError, match="disabled: must be true or false"):
        new_agent("a1", "0.5", disabled="yes")


def test_update_checks_what_it_is_given() -> None:
    assert AgentUpdate.of().empty
    assert not AgentUpdate.of(trust_level="0.2").empty
    with pytest.raises(InvalidAgentError, match="trust_level"):
        AgentUpdate.of(trust_level="1e1")
    with pytest.raises(InvalidAgentError, match="created_at: is not a field an update may change"):
        AgentUpdate.of(created_at=0)
    with pytest.raises(InvalidAgentError, match="attributes.tier"):
        AgentUpdate.of(attributes_patch={"tier": "gold"})
    with pytest.raises(InvalidAgentError, match="either a whole object or a patch"):
        AgentUpdate.of(attributes={}, attributes_patch={"a": 1})
    record = new_agent("a1", "0.5", tier="t", attributes={"a": 1, "b": {"c": 2, "d": 3}}, now=100.0)
    changed = AgentUpdate.of(tier=None, attributes_patch={"a": None, "b": {"c": None, "e": 4}}).apply(record, now=200.0)
    assert changed.tier is None and changed.attributes == {"b": {"d": 3, "e": 4}}
    assert (changed.created_at, changed.updated_at, changed.trust_level) == (100.0, 200.0, Decimal("0.5"))
    # A patch that makes the attributes too large is refused whole.
    with pytest.raises(InvalidAgentError, match="allowed"):
        AgentUpdate.of(attributes_patch={"blob": "x" * MAX_ATTRIBUTES_BYTES}).apply(record)


def test_record_json_is_exact() -> None:
    record = new_agent("a1", "0.300000000000000000000000000001", attributes={"cost": Decimal("12.50")}, now=0.5)
    doc = record.to_json()
    assert '"trust_level":0.300000000000000000000000000001' in doc and '"cost":12.50' in doc
    assert json.loads(doc)["created_at"] == "1970-01-01T00:00:00.500000Z"
    facts = record.facts()
    assert set(facts) == {"agent_id", "trust_level", "tier", "owner", "attributes", "disabled"}
    facts["attributes"]["cost"] = 0
    assert record.attributes == {"cost": Decimal("12.50")}


# -- the stores ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry' / 'agents.sqlite3'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def store(registry_url: str) -> AsyncIterator[AgentRegistry]:
    opened = open_registry(registry_url)
    yield opened
    await opened.close()


async def _tamper(url: str, sql: str) -> None:
    """Edits the database behind the registry's back, as someone with database access could."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            conn.execute(sql)
        conn.close()
    else:
        pg = await asyncpg.connect(url)
        try:
            await pg.execute(sql)
        finally:
            await pg.close()


@pytest.mark.anyio
async def test_store_round_trip(store: AgentRegistry) -> None:
    assert await store.list() == [] and await store.get("a1") is None
    g0 = await store.generation()
    added = await store.add(
        new_agent("a1", "0.300000000000000000000000000001", tier="gold", owner="ops", attributes={"cost": Decimal("12.50"), "tags": ["x"]})
    )
    await store.add(new_agent("b2", 1))
    assert await store.generation() > g0
    got = await store.get("a1")
    assert got == added
    assert got is not None and trust_text(got.trust_level) == "0.300000000000000000000000000001"
    assert dumps_exact(got.attributes) == '{"cost":12.50,"tags":["x"]}'
    assert [r.agent_id for r in await store.list()] == ["a1", "b2"]

    g1 = await store.generation()
    updated = await store.update("a1", AgentUpdate.of(trust_level="0.2", owner=None, attributes_patch={"tags": None, "n": 1}))
    assert updated.trust_level == Decimal("0.2") and updated.owner is None and updated.tier == "gold"
    assert updated.attributes == {"cost": Decimal("12.50"), "n": 1}
    assert updated.created_at == added.created_at and updated.updated_at >= added.updated_at
    assert await store.get("a1") == updated
    assert await store.generation() > g1

    await store.update("a1", AgentUpdate.of(disabled=True))
    got = await store.get("a1")
    assert got is not None and got.disabled

    removed = await store.remove("a1")
    assert removed.agent_id == "a1" and await store.get("a1") is None
    with pytest.raises(AgentNotFound):
        await store.remove("a1")
    with pytest.raises(AgentNotFound):
        await store.update("a1", AgentUpdate.of(trust_level="0.1"))
    assert [r.agent_id for r in await store.list()] == ["b2"]


@pytest.mark.anyio
async def test_ids_are_unique_in_any_letter_case(store: AgentRegistry) -> None:
    await store.add(new_agent("Agent-7", "0.1"))
    for same in ("Agent-7", "agent-7", "AGENT-7"):
        with pytest.raises(AgentExists):
            await store.add(new_agent(same, "0.9"))
    # Lookups are exact: another spelling is not this agent.
    assert await store.get("agent-7") is None
    got = await store.get("Agent-7")
    assert got is not None and got.trust_level == Decimal("0.1")


@pytest.mark.anyio
async def test_reads_do_not_move_the_generation(store: AgentRegistry) -> None:
    await store.add(new_agent("a1", "0.5"))
    g = await store.generation()
    await store.list()
    await store.get("a1")
    assert await store.generation() == g
    with pytest.raises(AgentExists):
        await store.add(new_agent("a1", "0.5"))
    assert await store.generation() == g  # a refused write changes nothing


@pytest.mark.anyio
async def test_malformed_ids_never_reach_the_store(store: AgentRegistry) -> None:
    for bad in ("a\x00", "a\u200b", "' OR 1=1 --"):
        with pytest.raises(InvalidAgentError):
            await store.get(bad)
        with pytest.raises(InvalidAgentError):
            await store.remove(bad)


@pytest.mark.anyio
async def test_a_row_edited_in_the_database_into_nonsense_is_never_served(store: AgentRegistry, registry_url: str) -> None:
    await store.add(new_agent("a1", "0.5"))
    await store.add(new_agent("b2", "0.5"))
    await store.add(new_agent("c3", "0.5"))
    await _tamper(registry_url, "UPDATE acgs_agents SET trust_level = '1e1' WHERE agent_id = 'a1'")
    await _tamper(registry_url, "UPDATE acgs_agents SET attributes = '{\"x\": NaN}' WHERE agent_id = 'b2'")
    assert await store.get("a1") is None and await store.get("b2") is None
    assert [r.agent_id for r in await store.list()] == ["c3"]
    with pytest.raises(InvalidAgentError):
        await store.update("a1", AgentUpdate.of(tier="x"))
    # An administrator can still remove it.
    assert (await store.remove("a1")).agent_id == "a1"


@pytest.mark.anyio
async def test_concurrent_updates_lose_nothing(store: AgentRegistry) -> None:
    await store.add(new_agent("a1", "0.5"))
    await asyncio.gather(*(store.update("a1", AgentUpdate.of(attributes_patch={f"k{i}": i})) for i in range(12)))
    got = await store.get("a1")
    assert got is not None and got.attributes == {f"k{i}": i for i in range(12)}


def test_open_registry_refuses_other_urls() -> None:
    from acgs.registry import RegistryError

    for url in ("mysql://x", "sqlite://relative", "agents.sqlite3", ""):
        with pytest.raises(RegistryError, match="use sqlite:///path or postgresql://"):
            open_registry(url)


@pytest.mark.anyio
async def test_unreachable_postgresql_is_unavailable(unused_tcp_port: int) -> None:
    store = open_registry(f"postgresql://acgs@127.0.0.1:{unused_tcp_port}/acgs")
    with pytest.raises(RegistryUnavailable):
        await store.list()
    await store.close()


@pytest.fixture
def unused_tcp_port() -> int:
    from tests.services.conftest import free_port

    return free_port()


# -- the cached reader --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cache_fails_closed_until_loaded(unused_tcp_port: int) -> None:
    cache = CachedRegistry(open_registry(f"postgresql://acgs@127.0.0.1:{unused_tcp_port}/acgs"), refresh=5)
    with pytest.raises(RegistryUnavailable):
        cache.lookup("a1")
    await cache.start()  # the failure is logged, not raised
    assert cache.failures == 1
    with pytest.raises(RegistryUnavailable):
        cache.lookup("a1")
    with pytest.raises(RegistryUnavailable):
        cache.trusted("a1")
    with pytest.raises(RegistryUnavailable):
        await cache.get("a1")
    await cache.close()


@pytest.mark.anyio
async def test_a_change_on_one_node_reaches_another(registry_url: str) -> None:
    node_a = CachedRegistry(open_registry(registry_url), refresh=3600)
    node_b = CachedRegistry(open_registry(registry_url), refresh=3600)
    await node_a.start()
    await node_b.start()
    try:
        await node_a.add(new_agent("a1", "0.9", tier="gold"))
        # The writer sees its own write at once; the other node at its next reload.
        assert node_a.lookup("a1") is not None
        assert node_b.lookup("a1") is None
        assert await node_b.refresh()
        record = node_b.lookup("a1")
        assert record is not None and record.trust_level == Decimal("0.9")

        await node_a.update("a1", AgentUpdate.of(trust_level="0.1"))
        assert await node_b.refresh()
        record = node_b.lookup("a1")
        assert record is not None and record.trust_level == Decimal("0.1")

        await node_a.update("a1", AgentUpdate.of(disabled=True))
        assert await node_b.refresh()
        assert node_b.lookup("a1") is not None and node_b.trusted("a1") is None

        await node_a.remove("a1")
        assert await node_b.refresh()
        assert node_b.lookup("a1") is None and node_b.size == 0
    finally:
        await node_a.close()
        await node_b.close()


@pytest.mark.anyio
async def test_the_background_reload_picks_up_changes(registry_url: str) -> None:
    writer = open_registry(registry_url)
    reader = CachedRegistry(open_registry(registry_url), refresh=0.05)
    await reader.start()
    try:
        await writer.add(new_agent("late", "0.4"))
        # Waits for the reload to happen (however long the machine takes), then checks it.
        for _ in range(600):
            if reader.lookup("late") is not None:
                break
            await asyncio.sleep(0.05)
        record = reader.lookup("late")
        assert record is not None and record.trust_level == Decimal("0.4")
    finally:
        await reader.close()
        await writer.close()


@pytest.mark.anyio
async def test_reload_skips_the_store_when_nothing_changed(tmp_path: Path) -> None:
    store = open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    await store.add(new_agent("a1", "0.5"))
    cache = CachedRegistry(store, refresh=3600)
    await cache.start()
    held = cache._records
    assert await cache.refresh()
    assert cache._records is held  # same generation: not reloaded
    await store.add(new_agent("b2", "0.5"))
    assert await cache.refresh()
    assert cache._records is not held and cache.size == 2
    await cache.close()


@pytest.mark.anyio
async def test_an_outage_keeps_the_records_held_unless_too_old(tmp_path: Path, unused_tcp_port: int) -> None:
    store = open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    await store.add(new_agent("a1", "0.5"))
    cache = CachedRegistry(store, refresh=3600, max_age=60)
    await cache.start()
    # The store becomes unreachable.
    cache.store = open_registry(f"postgresql://acgs@127.0.0.1:{unused_tcp_port}/acgs")
    assert not await cache.refresh()
    record = cache.lookup("a1")
    assert record is not None and cache.failures == 1
    # Past max_age, the records held are no longer served.
    assert cache.loaded_at is not None
    cache.loaded_at -= 61
    with pytest.raises(RegistryUnavailable, match="more than 60 s"):
        cache.lookup("a1")
    await cache.close()


@pytest.mark.anyio
async def test_refresh_zero_reads_the_store_every_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.sqlite3'}"
    cache = CachedRegistry(open_registry(url), refresh=0)
    await cache.start()
    other = open_registry(url)
    await other.add(new_agent("a1", "0.5"))
    assert await cache.get("a1") is not None
    assert [r.agent_id for r in await cache.list()] == ["a1"]
    await cache.close()


def test_cache_refuses_a_negative_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CachedRegistry(open_registry(f"sqlite:///{tmp_path / 'a.sqlite3'}"), refresh=float("nan"))


def test_records_are_immutable() -> None:
    record = new_agent("a1", "0.5")
    with pytest.raises(AttributeError):
        record.trust_level = Decimal(1)  # type: ignore[misc]
    assert isinstance(record, AgentRecord)


# -- acgs agents --------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_round_trip(registry_url: str) -> None:
    store = ["--store", registry_url]
    code, out, err = _cli(
        "agents", "add", "research-7", "--trust", "0.80", "--tier", "gold", "--owner", "ops team",
        "--attr", "team=search", "--attr-json", "max_cost=12.50", "--attr-json", "tools=[\"web\", \"shell\"]", "--json", *store,
    )  # fmt: skip
    assert code == 0, err
    added = json.loads(out)
    assert added["trust_level"] == 0.8 and '"trust_level":0.8,' in out
    assert '"max_cost":12.50' in out and added["attributes"]["tools"] == ["web", "shell"]
    assert _cli("agents", "add", "helper", "--trust", "1", *store)[1] == "added agent helper\n"

    code, out, _ = _cli("agents", "list", "--json", *store)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["agent_id"] for r in rows] == ["helper", "research-7"]
    code, out, _ = _cli("agents", "list", *store)
    assert code == 0 and out.splitlines()[0].split() == ["ID", "TRUST", "TIER", "OWNER", "DISABLED", "ATTRIBUTES"]
    assert "research-7  0.8" in out

    code, out, err = _cli(
        "agents", "update", "research-7", "--trust", "0.5", "--clear-owner", "--unset-attr", "team",
        "--attr-json", "max_cost=3", "--disable", "--json", *store,
    )  # fmt: skip
    assert code == 0, err
    updated = json.loads(out)
    assert updated["trust_level"] == 0.5 and updated["owner"] is None and updated["tier"] == "gold"
    assert updated["attributes"] == {"max_cost": 3, "tools": ["web", "shell"]} and updated["disabled"] is True
    code, out, _ = _cli("agents", "show", "research-7", *store)
    assert code == 0 and out.startswith("research-7 (disabled): trust 0.5, tier gold, owner -")
    code, out, _ = _cli("agents", "update", "research-7", "--enable", "--clear-attrs", "--json", *store)
    assert code == 0 and json.loads(out)["attributes"] == {} and json.loads(out)["disabled"] is False

    assert _cli("agents", "remove", "research-7", *store) == (0, "removed agent research-7\n", "")
    code, out, _ = _cli("agents", "list", "--json", *store)
    assert [json.loads(line)["agent_id"] for line in out.splitlines()] == ["helper"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("add", "a1", "--trust", "1e1"), 2, "trust_level: '1e1' is not a plain decimal"),
        (("add", "a1", "--trust", "NaN"), 2, "not a plain decimal"),
        (("add", "a1", "--trust", "1.5"), 2, "outside [0, 1]"),
        (("add", "a\x01", "--trust", "0.5"), 2, "is not an agent id"),
        (("add", "a\u200b", "--trust", "0.5"), 2, "is not an agent id"),
        (("add", "a1", "--trust", "0.5", "--attr", "novalue"), 2, "write KEY=VALUE"),
        (("add", "a1", "--trust", "0.5", "--attr-json", "x=NaN"), 2, "not JSON"),
        (("add", "a1", "--trust", "0.5", "--attr", "trust_level=1"), 2, "field of the record itself"),
        (("add", "a1", "--trust", "0.5", "--attr", f"a={'x' * 9000}", "--attr", f"b={'x' * 9000}"), 2, "allowed"),
        (("add", "a1"), 2, "Missing option '--trust'"),
        (("update", "a1"), 2, "nothing to change"),
        (("update", "a1", "--tier", "x", "--clear-tier"), 2, "not both"),
        (("update", "a1", "--trust", "1e1"), 2, "not a plain decimal"),
        (("update", "ghost", "--trust", "0.1"), 1, "no agent 'ghost' is registered"),
        (("show", "ghost"), 1, "no agent 'ghost' is registered"),
        (("remove", "ghost"), 1, "no agent 'ghost' is registered"),
        (("list", "--store", "mysql://db"), 1, "use sqlite:///path or postgresql://"),
    ],
)
def test_cli_refusals(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    store = () if "--store" in args else ("--store", f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    got, _, err = _cli("agents", *args, *store)
    assert got == code and message in err, err


def test_cli_refuses_a_duplicate(tmp_path: Path) -> None:
    store = ("--store", f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    assert _cli("agents", "add", "a1", "--trust", "0.5", *store)[0] == 0
    code, _, err = _cli("agents", "add", "A1", "--trust", "0.9", *store)
    assert code == 1 and "already registered" in err


def test_cli_default_store_follows_the_settings(tmp_path: Path) -> None:
    env = {"ACGS_DATA_DIR": str(tmp_path / "data")}
    assert _cli("agents", "add", "a1", "--trust", "0.5", env=env)[0] == 0
    assert (tmp_path / "data" / "agents.sqlite3").is_file()
    other = tmp_path / "elsewhere.sqlite3"
    assert _cli("agents", "add", "b2", "--trust", "0.5", env={**env, "ACGS_AGENT_REGISTRY": f"sqlite:///{other}"})[0] == 0
    assert other.is_file()
    code, out, _ = _cli("agents", "list", "--json", env=env)
    assert [json.loads(line)["agent_id"] for line in out.splitlines()] == ["a1"]
    code, _, err = _cli("agents", "list", env={"ACGS_AGENT_REGISTRY": "redis://x"})
    assert code == 2 and "ACGS_AGENT_REGISTRY" in err


def test_cli_help_lists_the_agent_commands() -> None:
    code, out, _ = _cli("agents", "--help")
    assert code == 0
    for name in ("add", "list", "show", "update", "remove"):
        assert f"  {name} " in out


# -- settings -----------------------------------------------------------------------------------


def test_settings_from_the_environment_and_the_file(tmp_path: Path) -> None:
    assert RegistrySettings.from_env({}).resolved_url() == "sqlite:///.acgs-data/agents.sqlite3"
    settings = RegistrySettings.from_env({"ACGS_DATA_DIR": str(tmp_path), "ACGS_AGENT_REGISTRY_REFRESH": "2.5"})
    assert settings.resolved_url() == f"sqlite:///{tmp_path / 'agents.sqlite3'}" and settings.refresh == 2.5
    for env in ({"ACGS_AGENT_REGISTRY": "mysql://x"}, {"ACGS_AGENT_REGISTRY_REFRESH": "-1"}, {"ACGS_AGENT_REGISTRY_REFRESH": "nan"}):
        with pytest.raises(ValueError, match=next(iter(env))):
            RegistrySettings.from_env(env)
    masked = RegistrySettings.from_env({"ACGS_AGENT_REGISTRY": "postgresql://acgs:secret@db/acgs"}).public()
    assert masked["url"] == "postgresql://***@db/acgs"

    config = load_config(None, environ={"ACGS_AGENT_REGISTRY": "postgresql://db/acgs", "ACGS_DATA_DIR": str(tmp_path)})
    assert config.agent_registry.url == "postgresql://db/acgs" and config.agent_registry.data_dir == tmp_path
    path = tmp_path / "acgs.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n[agent_registry]\nurl = "sqlite:///{tmp_path}/a.sqlite3"\nrefresh = 1\n')
    config = load_config(path, environ={})
    assert config.agent_registry.resolved_url() == f"sqlite:///{tmp_path}/a.sqlite3" and config.agent_registry.refresh == 1.0
    # The URL is a key of its own table, not a top-level key.
    path.write_text('url = "sqlite:///x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'url'"):
        load_config(path, environ={})
    path.write_text('[agent_registry]\nurl = "redis://x"\n')
    with pytest.raises(ConfigError, match="use sqlite:///path or postgresql://"):
        load_config(path, environ={})
    assert "[agent_registry]" in template() and "ACGS_AGENT_REGISTRY_REFRESH" in template()


@pytest.mark.anyio
async def test_facts_as_json_follow_each_change(tmp_path: Path) -> None:
    cache = CachedRegistry(open_registry(f"sqlite:///{tmp_path / 'agents.sqlite3'}"), refresh=3600)
    await cache.start()
    await cache.add(new_agent("a1", "0.300000000000000000000000000001", tier="gold", attributes={"cost": Decimal("12.50")}))
    text = cache.facts_json("a1")
    assert text == (
        '{"agent_id":"a1","trust_level":0.300000000000000000000000000001,"tier":"gold","owner":null,'
        '"attributes":{"cost":12.50},"disabled":false}'
    )
    assert cache.facts_json("a1") is text  # computed once per record version
    await cache.update("a1", AgentUpdate.of(trust_level="0.1"))
    assert '"trust_level":0.1,' in (cache.facts_json("a1") or "")
    await cache.update("a1", AgentUpdate.of(disabled=True))
    assert cache.facts_json("a1") is None and cache.facts_json("ghost") is None
    await cache.close()
