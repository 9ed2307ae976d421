"""The audit stores and the log over them, on SQLite and on a real PostgreSQL: receipts that a
third party can recompute, tampering (payload byte, deleted row, swapped rows, stored hash,
rewritten-and-rechained history, truncated tail) found at the first bad index, concurrent
writers (threads, and processes on PostgreSQL) making one valid chain, idempotent re-delivery,
and exports verified offline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from acgs import _acgs as core
from acgs.audit import AuditLog, verify_export
from acgs.audit.events import GENESIS
from acgs.errors import AuditIntegrityError, InvalidAuditEvent
from tests.services.audit_helpers import PRIVATE_KEY, REPO, VERIFIER_KEY, event, execute, make_log


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_database")
        return url
    return f"sqlite:///{tmp_path / 'audit.sqlite3'}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _fill(url: str, n: int, *, concurrent: bool = True) -> tuple[AuditLog, list[Any]]:
    log = make_log(url)
    await log.open()
    if concurrent:
        groups = await asyncio.gather(*(log.append([event(i)]) for i in range(n)))
        receipts = [g[0] for g in groups]
    else:
        receipts = await log.append([event(i) for i in range(n)])
    return log, receipts


def _fill_and_close(url: str, n: int, *, checkpoint: bool = True) -> list[Any]:
    async def go() -> list[Any]:
        log, receipts = await _fill(url, n)
        if checkpoint:
            await log.checkpoint()
        await log.close()
        return receipts

    result: list[Any] = run(go())
    return result


def _verify(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        log = make_log(url)
        await log.open()
        try:
            return (await log.verify()).as_dict()
        finally:
            await log.close()

    result: dict[str, Any] = run(go())
    return result


def test_receipts_are_what_a_third_party_recomputes(store_url: str) -> None:
    receipts = _fill_and_close(store_url, 50, checkpoint=False)
    assert sorted(r.index for r in receipts) == list(range(50))
    rows = execute(store_url, "SELECT idx, payload, content_hash, chain_hash FROM audit_events ORDER BY idx")
    prev = GENESIS
    by_index = {r.index: r for r in receipts}
    for idx, payload, content, chain in rows:
        payload = bytes(payload)
        doc = json.loads(payload)
        # The payload is the canonical JSON of the whole enriched event.
        assert payload == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert doc["event_id"] == by_index[idx].event_id and doc["event_id"].startswith("evt_")
        assert hashlib.sha256(payload).digest() == bytes(content) == by_index[idx].content_hash
        prev = hashlib.sha256(prev + bytes(content)).digest()
        assert prev == bytes(chain) == by_index[idx].chain_hash
        assert by_index[idx].receipt()["hash"] == f"sha256:{hashlib.sha256(payload).hexdigest()}"
    assert _verify(store_url)["ok"]


def test_bad_events_are_refused_with_the_reason(tmp_path: Path) -> None:
    log = make_log(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    cases = [
        ({**event(1), "agent_id": ""}, "agent_id must not be empty"),
        ({k: v for k, v in event(1).items() if k != "action"}, "action is required"),
        ({**event(1), "result": 3}, "result must be a string"),
        ({**event(1), "metadata": [1]}, "metadata must be an object"),
        ({**event(1), "metadata": {"x": float("nan")}}, "number_out_of_range"),
        ({**event(1), "metadata": {"x": 2**64}}, "number_out_of_range"),
        ({**event(1), "surprise": 1}, "unknown field(s): surprise"),
    ]
    for bad, why in cases:
        with pytest.raises(InvalidAuditEvent) as err:
            log.prepare([bad])
        assert why in str(err.value)


def test_idempotency_key_stores_an_event_once(store_url: str) -> None:
    async def go() -> None:
        log = make_log(store_url)
        await log.open()
        try:
            e = event(1, metadata={"idempotency_key": "evolution:abc"})
            first = (await log.append([e]))[0]
            again = await asyncio.gather(*(log.append([e]) for _ in range(5)))
            assert all(a[0].duplicate and a[0].event_id == first.event_id and a[0].index == 0 for a in again)
            both = await log.append([event(2, metadata={"idempotency_key": "k2"}), event(3, metadata={"idempotency_key": "k2"})])
            assert [b.index for b in both] == [1, 1] and both[1].duplicate
            assert await log.store.size() == 2
        finally:
            await log.close()

    run(go())


# ---- tampering ----------------------------------------------------------------------------


def _payload(url: str, idx: int) -> bytes:
    return bytes(execute(url, "SELECT payload FROM audit_events WHERE idx = $1", idx)[0][0])


def _tamper_payload_byte(url: str) -> None:
    p = bytearray(_payload(url, 37))
    at = p.index(b"data.read") + 5
    p[at] ^= 0x01  # "data.read" -> "data/read": still canonical JSON, another event
    execute(url, "UPDATE audit_events SET payload = $1 WHERE idx = $2", bytes(p), 37)


def _delete_row(url: str) -> None:
    execute(url, "DELETE FROM audit_events WHERE idx = $1", 37)


def _swap_rows(url: str) -> None:
    rows = {
        r[0]: r[1:]
        for r in execute(url, "SELECT idx, event_id, payload, content_hash, chain_hash FROM audit_events WHERE idx IN (37, 38)")
    }
    execute(url, "UPDATE audit_events SET event_id = event_id || '-x' WHERE idx IN (37, 38)")
    for idx, other in ((37, 38), (38, 37)):
        eid, payload, content, chain = rows[other]
        execute(
            url,
            "UPDATE audit_events SET payload = $1, content_hash = $2, chain_hash = $3 WHERE idx = $4",
            bytes(payload), bytes(content), bytes(chain), idx,
        )  # fmt: skip


def _edit_hash(url: str) -> None:
    content = bytearray(execute(url, "SELECT content_hash FROM audit_events WHERE idx = $1", 37)[0][0])
    content[0] ^= 0xFF
    execute(url, "UPDATE audit_events SET content_hash = $1 WHERE idx = $2", bytes(content), 37)


@pytest.mark.parametrize(
    ("tamper", "reasons"),
    [
        (_tamper_payload_byte, {"content_mismatch"}),
        (_delete_row, {"index_gap"}),
        (_swap_rows, {"chain_mismatch"}),
        (_edit_hash, {"content_mismatch"}),
    ],
    ids=["payload-byte", "delete-row", "swap-rows", "stored-hash"],
)
def test_tampering_is_found_at_the_first_bad_index(store_url: str, tamper: Any, reasons: set[str]) -> None:
    _fill_and_close(store_url, 80)
    assert _verify(store_url)["ok"]
    tamper(store_url)
    report = _verify(store_url)
    assert not report["ok"]
    assert report["first_bad_index"] == 37, report
    assert report["reason"] in reasons, report
    assert report["checked"] == 37

    async def sign() -> None:
        log = make_log(store_url)
        await log.open()
        try:
            await log.append([event(999)])
            # The log refuses to sign a checkpoint over events that do not verify.
            with pytest.raises(AuditIntegrityError, match="event 37"):
                await log.checkpoint()
        finally:
            await log.close()

    run(sign())


def test_rewritten_history_with_a_recomputed_chain_fails_the_signed_checkpoint(store_url: str) -> None:
    _fill_and_close(store_url, 40)
    # Rewrite event 10 and recompute every hash after it: the chain alone verifies again.
    rows = execute(store_url, "SELECT idx, payload, chain_hash FROM audit_events ORDER BY idx")
    prev = bytes(rows[9][2])
    for idx, payload, _chain in rows[10:]:
        payload = bytes(payload)
        if idx == 10:
            doc = json.loads(payload)
            doc["result"] = "allow" if doc["result"] == "deny" else "deny"
            payload = core.canonical_json(doc)
        content, chain = core.event_hashes(prev, payload)
        execute(
            store_url, "UPDATE audit_events SET payload = $1, content_hash = $2, chain_hash = $3 WHERE idx = $4",
            payload, content, chain, idx,
        )  # fmt: skip
        prev = chain
    report = _verify(store_url)
    assert not report["ok"] and report["reason"] == "checkpoint_mismatch"
    assert report["checkpoint"] == {"size": 40, "root_matches": False}


def test_truncated_tail_is_found_by_the_checkpoint(store_url: str) -> None:
    _fill_and_close(store_url, 30)
    execute(store_url, "DELETE FROM audit_events WHERE idx >= $1", 25)
    report = _verify(store_url)
    assert not report["ok"] and report["reason"] == "truncated" and report["first_bad_index"] == 25


# ---- concurrency ----------------------------------------------------------------------------


def test_concurrent_writer_threads_make_one_chain(store_url: str) -> None:
    """Four threads, each with its own store object (own connections and writer), each with
    25 concurrent appenders: 400 events, one chain."""
    _fill_and_close(store_url, 1, checkpoint=False)  # tables exist before the race
    acked: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        async def go() -> None:
            log = make_log(store_url)
            await log.open()
            try:
                for batch in range(4):
                    got = await asyncio.gather(
                        *(log.append([event(t * 1000 + batch * 100 + i)]) for i in range(25))
                    )
                    with lock:
                        acked.extend((g[0].index, g[0].event_id) for g in got)
            finally:
                await log.close()

        try:
            asyncio.run(go())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(acked) == 400
    assert len({i for i, _ in acked}) == 400, "two appends got the same index: the chain forked"
    stored = dict(execute(store_url, "SELECT idx, event_id FROM audit_events"))
    assert all(stored[i] == eid for i, eid in acked)
    report = _verify(store_url)
    assert report["ok"] and report["checked"] == 401


_WRITER = """
import asyncio, sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
from tests.services.audit_helpers import event, make_log
async def main():
    log = make_log(sys.argv[1])
    await log.open()
    w = int(sys.argv[2])
    for b in range(5):
        got = await asyncio.gather(*(log.append([event(w * 1000 + b * 40 + i)]) for i in range(40)))
        for g in got:
            print(g[0].index, g[0].event_id, flush=True)
    await log.close()
asyncio.run(main())
"""


def test_three_writer_processes_on_postgres_make_one_chain(postgres_database: str) -> None:
    _fill_and_close(postgres_database, 1, checkpoint=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, postgres_database, str(w), str(REPO), str(REPO / "python")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(3)
    ]
    acked: list[tuple[int, str]] = []
    for p in procs:
        out, err = p.communicate(120)
        assert p.returncode == 0, err.decode()
        acked.extend((int(a), b) for a, b in (line.split() for line in out.decode().splitlines()))
    assert len(acked) == 600 and len({i for i, _ in acked}) == 600
    stored = dict(execute(postgres_database, "SELECT idx, event_id FROM audit_events"))
    assert all(stored[i] == eid for i, eid in acked)
    report = _verify(postgres_database)
    assert report["ok"] and report["checked"] == 601


# ---- proofs and exports ---------------------------------------------------------------------


def test_checkpoints_proofs_and_offline_export(store_url: str) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any], str]:
        log, _ = await _fill(store_url, 100)
        try:
            first = await log.checkpoint()
            assert first is not None and first.size == 100
            assert core.verify_checkpoint(first.note, VERIFIER_KEY) == (log.origin, 100, first.root)
            await log.append([event(i) for i in range(100, 137)])
            second = await log.checkpoint()
            assert second is not None and second.size == 137
            proof, root_m, root_n = await log.consistency(100, 137)
            assert root_m == first.root and root_n == second.root
            assert core.verify_consistency(100, 137, first.root, second.root, proof)
            row = await log.store.read(42, 43)
            path = await log.inclusion(42, second)
            assert core.verify_inclusion(core.leaf_hash(row[0].content_hash), 42, 137, path, second.root)
            # Re-signing the same head returns the same checkpoint.
            assert (await log.checkpoint()) == second
            part = await log.export(20, 60)
            whole = await log.export()
            return part, whole, log.verifier_key
        finally:
            await log.close()

    part, whole, key = run(go())
    assert key == VERIFIER_KEY
    for doc in (part, whole):
        doc = json.loads(json.dumps(doc))  # as read back from a file
        report = verify_export(doc, VERIFIER_KEY)
        assert report.ok, report.problems
    assert len(part["events"]) == 40 and len(part["range_proof"]["peaks_before"]) == bin(20).count("1")
    assert whole["previous"] is not None and len(whole["events"]) == 137

    other_private, other_verifier = core.generate_signing_key("test.acgs/audit")
    assert not verify_export(part, other_verifier).ok
    tampered = json.loads(json.dumps(part))
    tampered["events"][5]["payload"] = tampered["events"][5]["payload"].replace("data.read", "data.wipe")
    bad = verify_export(tampered, VERIFIER_KEY)
    assert not bad.ok and bad.first_bad_index == 25
    # Recomputing the hashes of a forged event does not help: its inclusion proof fails.
    forged = json.loads(json.dumps(whole))
    e = forged["events"][136]
    payload = e["payload"].replace("data.read", "data.wipe").encode()
    content, chain = core.event_hashes(bytes.fromhex(forged["events"][135]["chain_hash"]), payload)
    e.update(payload=payload.decode(), content_hash=content.hex(), chain_hash=chain.hex())
    bad = verify_export(forged, VERIFIER_KEY)
    assert not bad.ok and "Merkle root" in bad.problems[0]
    # Nor does moving a segment: the same events claimed at other indices.
    moved = json.loads(json.dumps(part))
    moved["start"], moved["end"] = 21, 61
    for e in moved["events"]:
        e["index"] += 1
    assert not verify_export(moved, VERIFIER_KEY).ok


def test_signing_key_file_is_private_and_stable(tmp_path: Path) -> None:
    from acgs.audit import keys

    private = keys.load_or_create(tmp_path, environ={})
    path = tmp_path / keys.KEY_FILE
    assert (path.stat().st_mode & 0o777) == 0o600
    assert keys.load_or_create(tmp_path, environ={}) == private
    assert keys.load_or_create(tmp_path, environ={keys.ENV_KEY: PRIVATE_KEY}) == PRIVATE_KEY
    assert keys.key_name(private) == keys.DEFAULT_ORIGIN
