"""The session ledger (acgs.trust.sessions): each session's tool decisions, and each owner's
across its sessions, as the policy service keeps them, bounded in entries, sessions, owners and
idle time; settled only when pending and for the same tool (and owner), in both lists; the same
behaviour in process and in a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from acgs.trust import owner_key, with_member
from acgs.trust.sessions import (
    LocalSessionLedger,
    RedisSessionLedger,
    SessionHistoryUnavailable,
    SessionLedger,
    canonical_tool,
    history_max_of,
    open_ledger,
    trusted_session,
)
from tests.services.conftest import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["local", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[SessionLedger]:
    if request.param == "local":
        made: SessionLedger = LocalSessionLedger(3)
    else:
        server: RedisServer = request.getfixturevalue("redis")
        made = open_ledger(3, redis_url=server.url, timeout_ms=500)
        assert isinstance(made, RedisSessionLedger)
        await made._redis.flushdb()
    try:
        yield made
    finally:
        await made.close()


def entries(raw: bytes) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = orjson.loads(raw)
    return value


async def test_records_oldest_first_and_keeps_history_max(ledger: SessionLedger) -> None:
    assert await ledger.history_json("key:k1", "s") == b"[]"
    for i in range(5):
        await ledger.record("key:k1", "s", f"d{i}", f"tool{i}", "allow", ["l"])
    got = entries(await ledger.history_json("key:k1", "s"))
    assert [e["tool"] for e in got] == ["tool2", "tool3", "tool4"]
    assert got[0] == {"tool": "tool2", "outcome": "allow", "labels": ["l"]}
    # Entries that fell off the end cannot be settled any more.
    await ledger.record("key:k1", "s", "p", "read_secret", "require_approval", ["reads_secrets"])
    assert not await ledger.settle("d0", "rejected", tool="tool0")


async def test_sessions_are_kept_per_owner(ledger: SessionLedger) -> None:
    await ledger.record("key:a", "same", "d1", "read_secret", "allow", ["reads_secrets"])
    assert await ledger.history_json("key:b", "same") == b"[]"
    assert await ledger.history_json("key:a", "other") == b"[]"
    assert len(entries(await ledger.history_json("key:a", "same"))) == 1


async def test_settle_only_a_pending_entry_of_the_same_tool_and_owner(ledger: SessionLedger) -> None:
    await ledger.record("key:a", "s", "d1", "read_secret", "require_approval", ["reads_secrets"])
    await ledger.record("key:a", "s", "d2", "read_file", "allow", [])
    assert not await ledger.settle("d1", "rejected", tool="read_file")  # another tool
    assert not await ledger.settle("d1", "rejected", tool="read_secret", owner="key:b")  # another owner
    assert not await ledger.settle("d2", "rejected", tool="read_file")  # not pending
    assert not await ledger.settle("nope", "rejected", tool="read_secret")
    assert not await ledger.settle("x" * 1000, "rejected", tool="read_secret")
    assert await ledger.settle("d1", "rejected", tool=" Read_Secret ", owner="key:a")
    assert not await ledger.settle("d1", "approved", tool="read_secret")  # settled once
    got = entries(await ledger.history_json("key:a", "s"))
    assert got == [
        {"tool": "read_secret", "outcome": "rejected", "labels": ["reads_secrets"]},
        {"tool": "read_file", "outcome": "allow", "labels": []},
    ]
    with pytest.raises(ValueError):
        await ledger.settle("d2", "allow", tool="read_file")


async def test_history_max_zero_keeps_nothing() -> None:
    ledger = LocalSessionLedger(0)
    await ledger.record("o", "s", "d", "t", "allow", [])
    assert await ledger.history_json("o", "s") == b"[]"


async def test_local_sessions_are_bounded_and_expire() -> None:
    now = [0.0]
    ledger = LocalSessionLedger(2, max_sessions=3, idle_seconds=10, clock=lambda: now[0])
    for i in range(4):
        await ledger.record("o", f"s{i}", f"d{i}", "t", "require_approval", [])
    assert len(ledger) == 3
    assert await ledger.history_json("o", "s0") == b"[]"  # the least recently used went
    assert not await ledger.settle("d0", "rejected", tool="t")  # and its index with it
    now[0] = 5.0
    await ledger.history_json("o", "s1")  # a read keeps s1 alive
    now[0] = 12.0
    assert len(entries(await ledger.history_json("o", "s1"))) == 1
    assert await ledger.history_json("o", "s2") == b"[]"  # idle past 10 s
    assert not await ledger.settle("d2", "rejected", tool="t")
    await ledger.record("o", "s9", "d9", "t", "allow", [])  # sweeps the idle s3 out
    assert len(ledger) == 2


async def test_redis_entries_expire_when_idle(redis: RedisServer) -> None:
    ledger = open_ledger(5, redis_url=redis.url, idle_seconds=1)
    assert isinstance(ledger, RedisSessionLedger)
    await ledger.record("o", "s", "dx", "t", "require_approval", [])
    assert entries(await ledger.history_json("o", "s"))
    await asyncio.sleep(2.1)
    assert await ledger.history_json("o", "s") == b"[]"
    assert not await ledger.settle("dx", "rejected", tool="t")
    await ledger.close()


async def test_a_redis_fault_is_an_error_never_an_empty_history(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    ledger = open_ledger(5, redis_url=server.url, timeout_ms=200, retry_after=30)
    await ledger.record("o", "s", "d", "read_secret", "allow", ["reads_secrets"])
    server.stop()
    with pytest.raises(SessionHistoryUnavailable):
        await ledger.history_json("o", "s")
    with pytest.raises(SessionHistoryUnavailable):
        await ledger.histories_json("o", None)
    server.start()
    # Within retry_after the ledger answers at once, without waiting on Redis.
    with pytest.raises(SessionHistoryUnavailable):
        await ledger.record("o", "s", "d2", "t", "allow", [])
    with pytest.raises(SessionHistoryUnavailable):
        await ledger.settle("d", "rejected", tool="read_secret")
    await ledger.close()
    server.stop()


def test_helpers() -> None:
    assert canonical_tool("  DB.Drop_Table\n") == "db.drop_table"
    assert canonical_tool("\uff24b") == "\uff24b"  # only ASCII is folded, as the constitution does
    assert history_max_of({"acgs": {"constitution": {"tools": {"history_max": 7}}}}) == 7
    assert history_max_of(None) == 100
    assert history_max_of({"acgs": {"constitution": {"tools": {"history_max": "7"}}}}) == 100
    assert owner_key(None, "10.0.0.1") == "address:10.0.0.1"
    assert with_member(b"{}", "session", b"[]") == b'{"session":[]}'
    assert orjson.loads(with_member(b'{"principal":{"id":"a"}}', "session", b'{"history":[]}')) == {
        "principal": {"id": "a"},
        "session": {"history": []},
    }


async def test_one_owner_cannot_push_out_the_sessions_of_others() -> None:
    ledger = LocalSessionLedger(2, max_sessions=100, max_sessions_per_owner=3)
    await ledger.record("key:victim", "s", "v", "read_secret", "allow", ["reads_secrets"])
    for i in range(50):
        await ledger.record("key:flood", f"s{i}", f"f{i}", "t", "allow", [])
    assert len(ledger) == 4  # the flooder keeps its last 3
    assert entries(await ledger.history_json("key:victim", "s"))
    assert entries(await ledger.history_json("key:flood", "s49"))
    assert await ledger.history_json("key:flood", "s0") == b"[]"


async def test_the_callers_text_does_not_set_the_records_size(ledger: SessionLedger) -> None:
    long_id = "s" * 100_000
    await ledger.record("o", long_id, "d1", "x" * 100_000, "deny", [])
    got = entries(await ledger.history_json("o", long_id))
    assert len(got) == 1 and len(got[0]["tool"]) < 300
    assert await ledger.history_json("o", long_id[:-1]) == b"[]"
    if isinstance(ledger, LocalSessionLedger):
        assert all(len(key[1] or "") <= 128 for key in ledger._sessions)


# -- the principal's calls across its sessions ---------------------------------------------------


async def test_the_owners_calls_are_kept_across_sessions(ledger: SessionLedger) -> None:
    """Every call goes into its owner's list too, calls naming no session included: what an
    owner did in one session is in view from any other, and from none."""
    await ledger.record("key:a", "s1", "d1", "read_secret", "allow", ["reads_secrets"])
    await ledger.record("key:a", None, "d2", "read_file", "allow", [])
    await ledger.record("key:b", "s1", "d3", "http_get", "allow", ["sends_data_out"])
    session, principal = await ledger.histories_json("key:a", "s2")
    assert session == b"[]"
    assert [e["tool"] for e in entries(principal)] == ["read_secret", "read_file"]
    assert await ledger.histories_json("key:a", None) == (b"[]", principal)
    session, principal = await ledger.histories_json("key:a", "s1")
    assert [e["tool"] for e in entries(session)] == ["read_secret"]
    assert await ledger.history_json("key:a", "s1") == session
    # Another owner's list holds only its own calls.
    assert [e["tool"] for e in entries((await ledger.histories_json("key:b", None))[1])] == ["http_get"]
    assert await ledger.histories_json("key:c", "s1") == (b"[]", b"[]")
    # The owner's list keeps its last history_max calls (3 here), whatever their sessions.
    for i in range(3):
        await ledger.record("key:a", f"t{i}", f"e{i}", f"tool{i}", "allow", [])
    assert [e["tool"] for e in entries((await ledger.histories_json("key:a", None))[1])] == ["tool0", "tool1", "tool2"]
    assert [e["tool"] for e in entries(await ledger.history_json("key:a", "s1"))] == ["read_secret"]


async def test_settling_updates_the_session_and_the_owners_list(ledger: SessionLedger) -> None:
    await ledger.record("key:a", "s", "d1", "read_secret", "require_approval", ["reads_secrets"])
    await ledger.record("key:a", None, "d2", "read_secret", "require_approval", ["reads_secrets"])
    assert await ledger.settle("d1", "approved", tool="read_secret", owner="key:a")
    assert await ledger.settle("d2", "rejected", tool="read_secret")
    session, principal = await ledger.histories_json("key:a", "s")
    assert [e["outcome"] for e in entries(session)] == ["approved"]
    assert [e["outcome"] for e in entries(principal)] == ["approved", "rejected"]
    assert not await ledger.settle("d1", "rejected", tool="read_secret")  # settled once, in both


async def test_an_entry_settles_while_either_list_holds_it(ledger: SessionLedger) -> None:
    # d1 falls off the owner's list (3 calls in other sessions) but stays in its session.
    await ledger.record("key:a", "s", "d1", "read_secret", "require_approval", ["reads_secrets"])
    for i in range(3):
        await ledger.record("key:a", f"o{i}", f"x{i}", "read_file", "allow", [])
    assert await ledger.settle("d1", "rejected", tool="read_secret")
    assert entries(await ledger.history_json("key:a", "s"))[0]["outcome"] == "rejected"
    # Once it is gone from both, nothing settles.
    await ledger.record("key:c", "s", "d3", "read_secret", "require_approval", ["reads_secrets"])
    for i in range(3):
        await ledger.record("key:c", "s", f"z{i}", "read_file", "allow", [])
    assert not await ledger.settle("d3", "rejected", tool="read_secret")


async def test_a_call_in_no_session_still_settles(ledger: SessionLedger) -> None:
    await ledger.record("key:a", None, "d1", "read_secret", "require_approval", ["reads_secrets"])
    assert not await ledger.settle("d1", "rejected", tool="read_secret", owner="key:b")
    assert await ledger.settle("d1", "rejected", tool="read_secret", owner="key:a")
    assert entries((await ledger.histories_json("key:a", None))[1])[0]["outcome"] == "rejected"


async def test_local_owner_lists_are_bounded_and_expire() -> None:
    now = [0.0]
    ledger = LocalSessionLedger(2, max_principals=2, idle_seconds=10, clock=lambda: now[0])
    for owner in ("a", "b", "c"):
        await ledger.record(owner, None, f"d-{owner}", "t", "require_approval", [])
    assert len(ledger._principals) == 2
    assert await ledger.histories_json("a", None) == (b"[]", b"[]")  # the least recently used went
    assert not await ledger.settle("d-a", "rejected", tool="t")  # and its index with it
    now[0] = 11.0
    assert not await ledger.settle("d-b", "rejected", tool="t")  # idle past 10 s
    assert ledger.histories_now("c", None) == (b"[]", b"[]")
    assert not ledger._by_decision


async def test_redis_owner_lists_expire_when_idle(redis: RedisServer) -> None:
    ledger = open_ledger(5, redis_url=redis.url, idle_seconds=1)
    assert isinstance(ledger, RedisSessionLedger)
    await ledger.record("o", None, "dy", "t", "require_approval", [])
    assert entries((await ledger.histories_json("o", None))[1])
    await asyncio.sleep(2.1)
    assert await ledger.histories_json("o", None) == (b"[]", b"[]")
    assert not await ledger.settle("dy", "rejected", tool="t")
    await ledger.close()


async def test_the_trusted_session_member(ledger: SessionLedger) -> None:
    await ledger.record("key:a", "s", "d1", "read_secret", "allow", ["reads_secrets"])
    secret = {"tool": "read_secret", "outcome": "allow", "labels": ["reads_secrets"]}
    assert orjson.loads(await trusted_session(ledger, "key:a", "s")) == {
        "id": "s",
        "history": [secret],
        "principal_history": [secret],
    }
    assert orjson.loads(await trusted_session(ledger, "key:a", None)) == {"history": [], "principal_history": [secret]}


async def test_a_malformed_redis_owner_list_fails_closed(redis: RedisServer) -> None:
    ledger = open_ledger(5, redis_url=redis.url, timeout_ms=500)
    assert isinstance(ledger, RedisSessionLedger)
    await ledger.record("key:m", None, "dm", "read_file", "allow", [])
    await ledger._redis.rpush(ledger._principal_key("key:m"), b"no tab here")
    with pytest.raises(SessionHistoryUnavailable):
        await ledger.histories_json("key:m", "s")
    await ledger.close()
